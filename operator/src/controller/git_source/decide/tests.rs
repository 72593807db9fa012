use std::collections::BTreeSet;

use super::*;
use crate::controller::git_source::fixtures::{supplier_path, supplier_yaml, user_path, user_yaml};
use crate::desired;

const NORD: &str = "omsorg-nord";
const SYD: &str = "pleje-syd";

/// Repository files of `supplier` with its supplier.yaml and one file per user.
fn supplier_files(supplier: &str, users: &[&str]) -> Vec<(String, String)> {
    let mut files = vec![(supplier_path(supplier), supplier_yaml(supplier))];
    for user in users {
        files.push((user_path(supplier, user), user_yaml(supplier, user)));
    }
    files
}

/// Returns a labelled user object whose file is `suppliers/<supplier>/users/<name>.yaml`.
fn managed_user(supplier: &str, name: &str) -> ClusterObject {
    ClusterObject {
        object: ObjectRef::new(ObjectKind::SupplierUser, name),
        uid: Some(format!("uid-{name}")),
        supplier: supplier.to_owned(),
        managed: true,
        source_path: Some(user_path(supplier, name)),
        commit: None,
    }
}

fn managed_supplier(supplier: &str) -> ClusterObject {
    ClusterObject {
        object: ObjectRef::new(ObjectKind::Supplier, supplier),
        uid: Some(format!("uid-{supplier}")),
        supplier: supplier.to_owned(),
        managed: true,
        source_path: Some(supplier_path(supplier)),
        commit: None,
    }
}

fn user(name: &str) -> ObjectRef {
    ObjectRef::new(ObjectKind::SupplierUser, name)
}

fn supplier(name: &str) -> ObjectRef {
    ObjectRef::new(ObjectKind::Supplier, name)
}

#[derive(Default)]
struct Case {
    name: &'static str,
    files: Vec<(String, String)>,
    existing: Vec<ClusterObject>,
    blocked: Vec<&'static str>,
    overridden: Vec<&'static str>,
    apply: Vec<ObjectRef>,
    prune: Vec<ObjectRef>,
    kept: Vec<(ObjectRef, KeepReason)>,
}

fn run(case: &Case) -> Decision {
    let desired = desired::from_files(
        case.files
            .iter()
            .map(|(path, content)| (path.as_str(), content.as_bytes())),
    );
    let paths: BTreeSet<String> = case.files.iter().map(|(path, _)| path.clone()).collect();
    let blocked: BTreeSet<String> = case.blocked.iter().map(|s| s.to_string()).collect();
    let guard = DeletionGuard {
        overridden: case.overridden.iter().map(|s| s.to_string()).collect(),
        ..DeletionGuard::default()
    };
    decide(&DecisionInput {
        desired: &desired,
        paths: &paths,
        blocked_suppliers: &blocked,
        existing: &case.existing,
        guard: &guard,
    })
}

#[test]
fn decision_table() {
    let five = ["a-one", "a-two", "a-three", "a-four", "a-five"];
    let invalid_user = "apiVersion: adgang.example.org/v1alpha1\nkind: SupplierUser\n\
                        metadata:\n  name: bo-berg\nspec:\n  supplier: omsorg-nord\n  \
                        givenName: Bo\n  validFrom: not-a-date\n";
    let cases = vec![
        Case {
            name: "new files are applied",
            files: supplier_files(NORD, &["anne-hansen"]),
            apply: vec![supplier(NORD), user("anne-hansen")],
            ..Case::default()
        },
        Case {
            name: "removed file is pruned",
            files: supplier_files(NORD, &["anne-hansen"]),
            existing: vec![
                managed_supplier(NORD),
                managed_user(NORD, "anne-hansen"),
                managed_user(NORD, "bo-berg"),
            ],
            apply: vec![supplier(NORD), user("anne-hansen")],
            prune: vec![user("bo-berg")],
            ..Case::default()
        },
        Case {
            name: "object made by hand is not pruned",
            files: supplier_files(NORD, &[]),
            existing: vec![ClusterObject {
                managed: false,
                source_path: None,
                ..managed_user(NORD, "carl-dahl")
            }],
            apply: vec![supplier(NORD)],
            ..Case::default()
        },
        Case {
            name: "file that fails to parse keeps its object",
            files: {
                let mut files = supplier_files(NORD, &[]);
                files.push((user_path(NORD, "bo-berg"), invalid_user.to_owned()));
                files
            },
            existing: vec![managed_user(NORD, "bo-berg")],
            apply: vec![supplier(NORD)],
            kept: vec![(
                user("bo-berg"),
                KeepReason::InvalidFile {
                    path: user_path(NORD, "bo-berg"),
                },
            )],
            ..Case::default()
        },
        Case {
            name: "invalid supplier.yaml freezes the supplier",
            files: vec![
                (supplier_path(NORD), "kind: Supplier\n".to_owned()),
                (
                    user_path(NORD, "anne-hansen"),
                    user_yaml(NORD, "anne-hansen"),
                ),
            ],
            existing: vec![managed_supplier(NORD), managed_user(NORD, "bo-berg")],
            kept: vec![
                (supplier(NORD), KeepReason::SupplierFrozen),
                (user("bo-berg"), KeepReason::SupplierFrozen),
            ],
            ..Case::default()
        },
        Case {
            name: "unauthorised commits freeze the supplier",
            files: [
                supplier_files(NORD, &["anne-hansen"]),
                supplier_files(SYD, &[]),
            ]
            .concat(),
            existing: vec![managed_user(NORD, "bo-berg")],
            blocked: vec![NORD],
            apply: vec![supplier(SYD)],
            kept: vec![(user("bo-berg"), KeepReason::Unauthorised)],
            ..Case::default()
        },
        Case {
            name: "guard blocks a mass prune",
            files: supplier_files(NORD, &["a-one"]),
            existing: five.iter().map(|n| managed_user(NORD, n)).collect(),
            apply: vec![supplier(NORD), user("a-one")],
            kept: ["a-five", "a-four", "a-three", "a-two"]
                .iter()
                .map(|n| {
                    (
                        user(n),
                        KeepReason::MassDeletionBlocked {
                            deletions: 4,
                            users: 5,
                        },
                    )
                })
                .collect(),
            ..Case::default()
        },
        Case {
            name: "lifted guard lets a mass prune through",
            files: supplier_files(NORD, &["a-one"]),
            existing: five.iter().map(|n| managed_user(NORD, n)).collect(),
            overridden: vec![NORD],
            apply: vec![supplier(NORD), user("a-one")],
            prune: vec![
                user("a-five"),
                user("a-four"),
                user("a-three"),
                user("a-two"),
            ],
            ..Case::default()
        },
        Case {
            name: "removed supplier folder prunes users before the supplier",
            files: supplier_files(SYD, &[]),
            existing: vec![
                managed_supplier(NORD),
                managed_user(NORD, "anne-hansen"),
                managed_user(NORD, "bo-berg"),
            ],
            apply: vec![supplier(SYD)],
            prune: vec![user("anne-hansen"), user("bo-berg"), supplier(NORD)],
            ..Case::default()
        },
        Case {
            name: "one user name in two suppliers is applied for neither",
            files: [
                supplier_files(NORD, &["anne-hansen"]),
                supplier_files(SYD, &["anne-hansen"]),
            ]
            .concat(),
            existing: vec![managed_user(NORD, "anne-hansen")],
            apply: vec![supplier(NORD), supplier(SYD)],
            kept: vec![(
                user("anne-hansen"),
                KeepReason::NameConflict {
                    paths: vec![
                        user_path(NORD, "anne-hansen"),
                        user_path(SYD, "anne-hansen"),
                    ],
                },
            )],
            ..Case::default()
        },
        Case {
            name: "user moved to another supplier is applied, not pruned",
            files: [
                supplier_files(NORD, &[]),
                supplier_files(SYD, &["anne-hansen"]),
            ]
            .concat(),
            existing: vec![managed_user(NORD, "anne-hansen")],
            apply: vec![supplier(NORD), supplier(SYD), user("anne-hansen")],
            ..Case::default()
        },
        Case {
            name: "labelled object without the path annotation uses the layout's path",
            files: supplier_files(NORD, &[]),
            existing: vec![ClusterObject {
                source_path: None,
                ..managed_user(NORD, "bo-berg")
            }],
            apply: vec![supplier(NORD)],
            prune: vec![user("bo-berg")],
            ..Case::default()
        },
    ];

    for case in &cases {
        let decision = run(case);

        let applied: Vec<ObjectRef> = decision.apply.iter().map(|d| d.object.clone()).collect();
        let pruned: Vec<ObjectRef> = decision.prune.iter().map(|o| o.object.clone()).collect();
        let kept: Vec<(ObjectRef, KeepReason)> = decision
            .kept
            .iter()
            .map(|k| (k.object.clone(), k.reason.clone()))
            .collect();
        assert_eq!(applied, case.apply, "{}: applied", case.name);
        assert_eq!(pruned, case.prune, "{}: pruned", case.name);
        assert_eq!(kept, case.kept, "{}: kept", case.name);
    }
}

#[test]
fn applied_objects_carry_source_path() {
    let case = Case {
        files: supplier_files(NORD, &["anne-hansen"]),
        ..Case::default()
    };

    let decision = run(&case);

    let paths: Vec<&str> = decision
        .apply
        .iter()
        .map(|d| d.source_path.as_str())
        .collect();
    assert_eq!(paths, [supplier_path(NORD), user_path(NORD, "anne-hansen")]);
}
