//! Table tests of the plan rules. Every test builds the desired state from YAML, as a file in
//! the repository would hold it, and a snapshot as the directory would return it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Europe::Copenhagen;

use super::*;
use crate::desired::{self, DesiredState};
use crate::model::DirectorySnapshot;

const BASE: &str = "OU=Leverandører,DC=adgang,DC=test";
const OU: &str = "OU=Omsorg Nord\\, ApS,OU=Leverandører,DC=adgang,DC=test";
const BRUGERE: &str = "CN=Nexus-Brugere,OU=Grupper,DC=adgang,DC=test";
const HJEMMEPLEJE: &str = "CN=Nexus-Hjemmepleje,OU=Grupper,DC=adgang,DC=test";
const VPN: &str = "CN=VPN-Brugere,OU=Grupper,DC=adgang,DC=test";

fn settings() -> Settings {
    Settings {
        managed_base: BASE.to_owned(),
        upn_suffix: "adgang.test".to_owned(),
        time_zone: Copenhagen,
        grace_days: 0,
        guard: DeletionGuard::default(),
    }
}

/// Noon on 15 January 2027, Copenhagen time.
fn now() -> DateTime<Utc> {
    at("2027-01-15T11:00:00Z")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

const SUPPLIER: &str = "apiVersion: adgang.example.org/v1alpha1
kind: Supplier
metadata:
  name: omsorg-nord
spec:
  displayName: Omsorg Nord ApS
  cvr: \"12345678\"
  secureMail: sikker@omsorg-nord.example.org
  organizationalUnit: Omsorg Nord, ApS
  groups: [Nexus-Brugere, Nexus-Hjemmepleje]
";

/// A user file with the given extra spec lines after the required ones.
fn user_yaml(
    name: &str,
    given: &str,
    surname: &str,
    from: &str,
    until: &str,
    extra: &str,
) -> String {
    format!(
        "apiVersion: adgang.example.org/v1alpha1
kind: SupplierUser
metadata:
  name: {name}
spec:
  supplier: omsorg-nord
  givenName: {given}
  surname: {surname}
  validFrom: {from}
  validUntil: {until}
  employment:
    start: 2026-01-01
{extra}"
    )
}

fn anne(extra: &str) -> (String, String) {
    let mut extra = extra.to_owned();
    if !extra.contains("groups") {
        extra.push_str("  groups: [Nexus-Brugere]\n");
    }
    (
        "suppliers/omsorg-nord/users/anne-hansen.yaml".to_owned(),
        user_yaml(
            "anne-hansen",
            "Anne",
            "Hansen",
            "2027-01-04",
            "2027-06-30",
            &extra,
        ),
    )
}

fn desired(users: &[(String, String)]) -> DesiredState {
    let mut files = vec![(
        "suppliers/omsorg-nord/supplier.yaml".to_owned(),
        SUPPLIER.to_owned(),
    )];
    files.extend(users.iter().cloned());

    desired::from_files(files.iter().map(|(p, c)| (p.as_str(), c.as_bytes())))
}

fn snapshot(accounts: Vec<Account>) -> DirectorySnapshot {
    DirectorySnapshot {
        accounts,
        groups: [
            ("nexus-brugere".to_owned(), BRUGERE.to_owned()),
            ("nexus-hjemmepleje".to_owned(), HJEMMEPLEJE.to_owned()),
        ]
        .into(),
        taken_usernames: BTreeSet::new(),
        organizational_units: [OU.to_owned()].into(),
    }
}

fn key(name: &str) -> UserKey {
    UserKey::new("omsorg-nord", name)
}

/// An account that matches `anne()` exactly at `now()`.
fn anne_account() -> Account {
    let mut attributes = BTreeMap::new();
    attributes.insert("givenName".into(), "Anne".into());
    attributes.insert("sn".into(), "Hansen".into());
    attributes.insert("displayName".into(), "Anne Hansen".into());
    attributes.insert("userPrincipalName".into(), "anne.hansen@adgang.test".into());
    Account {
        dn: format!("CN=anne.hansen,{OU}"),
        object_guid: "b4b3a0a4-0000-4000-8000-000000000001".into(),
        username: "anne.hansen".into(),
        link: Some(key("anne-hansen")),
        attributes,
        account_expires: Some(expiry::account_expires(date("2027-06-30"), Copenhagen)),
        enabled: true,
        credentials_pending: false,
        member_of: [BRUGERE.to_owned()].into(),
    }
}

fn unlinked(dn: &str, username: &str) -> Account {
    Account {
        dn: dn.into(),
        username: username.into(),
        link: None,
        ..Account::default()
    }
}

fn actions_of<'p>(plan: &'p Plan, name: &str) -> Vec<&'p Action> {
    plan.accounts
        .iter()
        .filter(|a| a.key == key(name))
        .flat_map(|a| &a.actions)
        .collect()
}

fn kinds(actions: &[&Action]) -> Vec<&'static str> {
    actions
        .iter()
        .map(|a| match a {
            Action::CreateOrganizationalUnit { .. } => "create-ou",
            Action::Create { .. } => "create",
            Action::SetInitialPassword { .. } => "password",
            Action::UpdateAttributes { .. } => "update",
            Action::SetExpiry { .. } => "expiry",
            Action::AddToGroup { .. } => "add-group",
            Action::RemoveFromGroup { .. } => "remove-group",
            Action::Enable { .. } => "enable",
            Action::Disable { .. } => "disable",
            Action::Delete { .. } => "delete",
        })
        .collect()
}

fn run(state: &DesiredState, snap: &DirectorySnapshot) -> Plan {
    assert!(
        state.errors.is_empty(),
        "unexpected file errors: {:?}",
        state.errors
    );
    plan(state, snap, None, now(), &settings())
}

#[test]
fn new_active_user_created_in_safe_order() {
    let plan = run(&desired(&[anne("")]), &snapshot(vec![]));
    let actions = actions_of(&plan, "anne-hansen");
    assert_eq!(
        kinds(&actions),
        ["create", "password", "add-group", "enable"]
    );

    let Action::Create {
        dn,
        username,
        attributes,
        account_expires,
        ..
    } = actions[0]
    else {
        panic!("first action is not a create: {:?}", actions[0]);
    };
    assert_eq!(dn, &format!("CN=anne.hansen,{OU}"));
    assert_eq!(username, "anne.hansen");
    assert_eq!(attributes["displayName"], "Anne Hansen");
    assert_eq!(attributes["userPrincipalName"], "anne.hansen@adgang.test");
    assert_eq!(
        *account_expires,
        expiry::account_expires(date("2027-06-30"), Copenhagen)
    );
    assert!(
        plan.organizational_units.is_empty(),
        "the OU exists already"
    );
}

#[test]
fn missing_ou_created_first() {
    let mut snap = snapshot(vec![]);
    snap.organizational_units.clear();
    let plan = run(&desired(&[anne("")]), &snap);
    assert_eq!(
        plan.organizational_units,
        [Action::CreateOrganizationalUnit {
            supplier: "omsorg-nord".into(),
            dn: OU.into()
        }]
    );
}

#[test]
fn future_start_created_disabled() {
    let file = (
        "suppliers/omsorg-nord/users/mette-kjaer.yaml".to_owned(),
        user_yaml(
            "mette-kjaer",
            "Mette",
            "Kjær",
            "2027-02-01",
            "2027-12-31",
            "",
        ),
    );
    let plan = run(&desired(&[file]), &snapshot(vec![]));
    assert_eq!(
        kinds(&actions_of(&plan, "mette-kjaer")),
        ["create", "password"]
    );
}

#[test]
fn enabled_at_start_of_valid_from() {
    let file = (
        "suppliers/omsorg-nord/users/mette-kjaer.yaml".to_owned(),
        user_yaml(
            "mette-kjaer",
            "Mette",
            "Kjær",
            "2027-02-01",
            "2027-12-31",
            "",
        ),
    );
    let state = desired(&[file]);
    // 31 January 23:59:59 Copenhagen is 22:59:59 UTC; 1 February starts at 23:00 UTC.
    let before = plan(
        &state,
        &snapshot(vec![]),
        None,
        at("2027-01-31T22:59:59Z"),
        &settings(),
    );
    let after = plan(
        &state,
        &snapshot(vec![]),
        None,
        at("2027-01-31T23:00:00Z"),
        &settings(),
    );
    assert!(!kinds(&actions_of(&before, "mette-kjaer")).contains(&"enable"));
    assert!(kinds(&actions_of(&after, "mette-kjaer")).contains(&"enable"));
}

#[test]
fn expired_before_creation_not_created() {
    let file = (
        "suppliers/omsorg-nord/users/jens-poulsen.yaml".to_owned(),
        user_yaml(
            "jens-poulsen",
            "Jens",
            "Poulsen",
            "2026-06-01",
            "2027-01-14",
            "",
        ),
    );
    let plan = run(&desired(&[file]), &snapshot(vec![]));
    assert!(plan.is_empty());
    assert_eq!(
        plan.findings,
        [Finding::NotCreatedAlreadyExpired {
            key: key("jens-poulsen"),
            last_day: date("2027-01-14")
        }]
    );
}

#[test]
fn matching_account_plans_nothing() {
    let plan = run(&desired(&[anne("")]), &snapshot(vec![anne_account()]));
    assert!(plan.is_empty(), "{plan:#?}");
    assert!(plan.findings.is_empty(), "{:?}", plan.findings);
}

#[test]
fn expiry_deletes_at_end_of_last_day() {
    let state = desired(&[anne("")]);
    let snap = snapshot(vec![anne_account()]);
    // 30 June 2027 ends at 22:00 UTC (summer time).
    let last_second = plan(&state, &snap, None, at("2027-06-30T21:59:59Z"), &settings());
    let after = plan(&state, &snap, None, at("2027-06-30T22:00:00Z"), &settings());
    assert!(last_second.is_empty());
    assert_eq!(
        actions_of(&after, "anne-hansen"),
        [&Action::Delete {
            key: key("anne-hansen"),
            dn: format!("CN=anne.hansen,{OU}"),
            reason: DeleteReason::Expired
        }]
    );
}

#[test]
fn grace_days_delay_deletion() {
    let state = desired(&[anne("")]);
    let snap = snapshot(vec![anne_account()]);
    let mut settings = settings();
    settings.grace_days = 2;
    let kept = plan(&state, &snap, None, at("2027-07-02T21:59:59Z"), &settings);
    let deleted = plan(&state, &snap, None, at("2027-07-02T22:00:00Z"), &settings);
    assert!(kept.is_empty());
    assert_eq!(kinds(&actions_of(&deleted, "anne-hansen")), ["delete"]);
}

#[test]
fn employment_end_past_deletes_at_once() {
    let (path, content) = anne("    end: 2027-01-10\n");
    let plan = run(
        &desired(&[(path, content)]),
        &snapshot(vec![anne_account()]),
    );
    let actions = actions_of(&plan, "anne-hansen");
    assert_eq!(actions.len(), 1);
    assert!(matches!(
        actions[0],
        Action::Delete {
            reason: DeleteReason::EmploymentEnded,
            ..
        }
    ));
}

#[test]
fn employment_end_sets_expiry() {
    let (path, content) = anne("    end: 2027-03-31\n");
    let plan = run(
        &desired(&[(path, content)]),
        &snapshot(vec![anne_account()]),
    );
    let actions = actions_of(&plan, "anne-hansen");
    assert_eq!(
        actions,
        [&Action::SetExpiry {
            key: key("anne-hansen"),
            dn: format!("CN=anne.hansen,{OU}"),
            from: Some(expiry::account_expires(date("2027-06-30"), Copenhagen)),
            to: expiry::account_expires(date("2027-03-31"), Copenhagen),
        }]
    );
}

#[test]
fn removed_file_deletes_account() {
    let plan = run(&desired(&[]), &snapshot(vec![anne_account()]));
    assert_eq!(
        actions_of(&plan, "anne-hansen"),
        [&Action::Delete {
            key: key("anne-hansen"),
            dn: format!("CN=anne.hansen,{OU}"),
            reason: DeleteReason::FileRemoved
        }]
    );
}

#[test]
fn invalid_file_freezes_account() {
    let (path, content) = anne("");
    let broken = content.replace("validUntil: 2027-06-30", "validUntil: 2027-02-30");
    let state = desired(&[(path, broken)]);
    assert_eq!(state.errors.len(), 1, "{:?}", state.errors);
    assert_eq!(
        state.errors[0].path,
        "suppliers/omsorg-nord/users/anne-hansen.yaml"
    );

    let plan = plan(
        &state,
        &snapshot(vec![anne_account()]),
        None,
        now(),
        &settings(),
    );
    assert!(plan.is_empty(), "{plan:#?}");
    assert_eq!(
        plan.findings,
        [Finding::UserFrozen {
            key: key("anne-hansen"),
            exists_in_ad: true
        }]
    );
}

#[test]
fn invalid_supplier_freezes_all_accounts() {
    let files = [
        (
            "suppliers/omsorg-nord/supplier.yaml",
            SUPPLIER.replace("cvr: \"12345678\"", "cvr: 1234"),
        ),
        ("suppliers/omsorg-nord/users/anne-hansen.yaml", anne("").1),
    ];
    let state = desired::from_files(files.iter().map(|(p, c)| (*p, c.as_bytes())));
    assert!(!state.errors.is_empty());

    let plan = plan(
        &state,
        &snapshot(vec![anne_account()]),
        None,
        now(),
        &settings(),
    );
    assert!(plan.is_empty(), "{plan:#?}");
    assert!(plan.findings.contains(&Finding::SupplierFrozen {
        supplier: "omsorg-nord".into()
    }));
}

#[test]
fn suspended_supplier_untouched() {
    let files = [(
        "suppliers/omsorg-nord/supplier.yaml",
        format!("{SUPPLIER}  suspend: true\n"),
    )];
    let state = desired::from_files(files.iter().map(|(p, c)| (*p, c.as_bytes())));
    let plan = run(&state, &snapshot(vec![anne_account()]));
    assert!(plan.is_empty(), "{plan:#?}");
    assert_eq!(
        plan.findings,
        [Finding::SupplierSuspended {
            supplier: "omsorg-nord".into()
        }]
    );
}

#[test]
fn unmanaged_object_only_reported() {
    let stranger = unlinked(&format!("CN=manuel,{OU}"), "manuel");
    let plan = run(&desired(&[]), &snapshot(vec![stranger]));
    assert!(plan.is_empty());
    assert_eq!(
        plan.findings,
        [Finding::UnmanagedObject {
            dn: format!("CN=manuel,{OU}"),
            username: "manuel".into()
        }]
    );
}

#[test]
fn renamed_person_updated_in_place() {
    let (path, content) = anne("");
    let content = content.replace("surname: Hansen", "surname: Holm, jr.");
    let previous = BTreeMap::new();
    let state = desired(&[(path, content)]);
    let plan = plan(
        &state,
        &snapshot(vec![anne_account()]),
        Some(&previous),
        now(),
        &settings(),
    );

    let actions = actions_of(&plan, "anne-hansen");
    let [Action::UpdateAttributes { dn, changes, .. }] = actions.as_slice() else {
        panic!("expected one attribute update: {actions:#?}");
    };
    assert_eq!(dn, &format!("CN=anne.hansen,{OU}"));
    let changed: Vec<(&str, Option<&str>)> = changes
        .iter()
        .map(|c| (c.attribute.as_str(), c.to.as_deref()))
        .collect();
    assert_eq!(
        changed,
        [
            ("sn", Some("Holm, jr.")),
            ("displayName", Some("Anne Holm, jr."))
        ]
    );
    assert!(
        !plan.accounts[0].drift,
        "a changed file is an update, not drift"
    );
}

#[test]
fn hand_edit_put_back_as_drift() {
    let state = desired(&[anne("")]);
    let previous: BTreeMap<UserKey, SupplierUserSpec> = state
        .users()
        .map(|u| (u.key.clone(), u.spec.clone()))
        .collect();
    let mut account = anne_account();
    account
        .attributes
        .insert("displayName".into(), "Anne H.".into());
    account.account_expires = Some(expiry::account_expires(date("2030-01-01"), Copenhagen));

    let plan = plan(
        &state,
        &snapshot(vec![account]),
        Some(&previous),
        now(),
        &settings(),
    );
    assert_eq!(
        kinds(&actions_of(&plan, "anne-hansen")),
        ["update", "expiry"]
    );
    assert!(plan.accounts[0].drift);
}

#[test]
fn username_change_rejected() {
    let plan = run(
        &desired(&[anne("  username: ahansen\n")]),
        &snapshot(vec![anne_account()]),
    );
    assert!(plan.is_empty());
    assert_eq!(
        plan.findings,
        [Finding::UsernameChangeRejected {
            key: key("anne-hansen"),
            source: "suppliers/omsorg-nord/users/anne-hansen.yaml".into(),
            requested: "ahansen".into(),
            existing: "anne.hansen".into(),
        }]
    );
}

#[test]
fn username_kept_when_file_names_none() {
    let mut account = anne_account();
    account.username = "anne.hansen2".into();
    account.dn = format!("CN=anne.hansen2,{OU}");
    account.attributes.insert(
        "userPrincipalName".into(),
        "anne.hansen2@adgang.test".into(),
    );
    let plan = run(&desired(&[anne("")]), &snapshot(vec![account]));
    assert!(plan.is_empty(), "{plan:#?}");
}

#[test]
fn derived_username_avoids_collisions() {
    let second = (
        "suppliers/omsorg-nord/users/anne-hansen-2.yaml".to_owned(),
        user_yaml(
            "anne-hansen-2",
            "Anne",
            "Hansen",
            "2027-01-04",
            "2027-06-30",
            "",
        ),
    );
    let mut snap = snapshot(vec![]);
    snap.taken_usernames.insert("anne.hansen".into());
    let plan = run(&desired(&[anne(""), second]), &snap);
    let usernames: Vec<&str> = plan.accounts.iter().map(|a| a.username.as_str()).collect();
    assert_eq!(usernames, ["anne.hansen2", "anne.hansen3"]);
}

#[test]
fn requested_username_taken_reported() {
    let mut snap = snapshot(vec![]);
    snap.taken_usernames.insert("ahansen".into());
    let plan = run(&desired(&[anne("  username: AHansen\n")]), &snap);
    assert!(plan.is_empty());
    assert!(
        matches!(&plan.findings[..], [Finding::UsernameTaken { requested, .. }] if requested == "AHansen")
    );
}

#[test]
fn groups_reconciled_and_unmanaged_reported() {
    let mut account = anne_account();
    account.member_of = [HJEMMEPLEJE.to_owned(), VPN.to_owned()].into();
    let plan = run(&desired(&[anne("")]), &snapshot(vec![account]));
    let actions = actions_of(&plan, "anne-hansen");
    assert_eq!(kinds(&actions), ["add-group", "remove-group"]);
    assert!(matches!(actions[0], Action::AddToGroup { group_dn, .. } if group_dn == BRUGERE));
    assert!(
        matches!(actions[1], Action::RemoveFromGroup { group_dn, .. } if group_dn == HJEMMEPLEJE)
    );
    assert_eq!(
        plan.findings,
        [Finding::UnmanagedGroupMembership {
            key: key("anne-hansen"),
            dn: format!("CN=anne.hansen,{OU}"),
            group_dn: VPN.into()
        }]
    );
}

#[test]
fn group_dn_case_ignored() {
    let mut account = anne_account();
    account.member_of = [BRUGERE.to_uppercase()].into();
    let plan = run(&desired(&[anne("")]), &snapshot(vec![account]));
    assert!(plan.is_empty(), "{plan:#?}");
}

#[test]
fn missing_group_reported() {
    let mut snap = snapshot(vec![]);
    snap.groups.remove("nexus-brugere");
    let plan = run(&desired(&[anne("")]), &snap);
    assert_eq!(
        kinds(&actions_of(&plan, "anne-hansen")),
        ["create", "password", "enable"]
    );
    assert!(
        matches!(&plan.findings[..], [Finding::GroupNotFound { group, .. }] if group == "Nexus-Brugere")
    );
}

#[test]
fn pending_credentials_delivered_before_enable() {
    let mut account = anne_account();
    account.enabled = false;
    account.credentials_pending = true;
    let plan = run(&desired(&[anne("")]), &snapshot(vec![account]));
    assert_eq!(
        kinds(&actions_of(&plan, "anne-hansen")),
        ["password", "enable"]
    );
}

#[test]
fn enabled_before_start_disabled() {
    let (path, content) = anne("");
    let content = content.replace("validFrom: 2027-01-04", "validFrom: 2027-02-01");
    let plan = run(
        &desired(&[(path, content)]),
        &snapshot(vec![anne_account()]),
    );
    assert_eq!(kinds(&actions_of(&plan, "anne-hansen")), ["disable"]);
}

fn many_accounts(count: usize) -> (Vec<(String, String)>, Vec<Account>) {
    let mut files = Vec::new();
    let mut accounts = Vec::new();
    for i in 0..count {
        let name = format!("user-{i}");
        files.push((
            format!("suppliers/omsorg-nord/users/{name}.yaml"),
            user_yaml(&name, "Anne", "Hansen", "2027-01-04", "2027-06-30", ""),
        ));
        let mut account = anne_account();
        account.link = Some(key(&name));
        account.username = format!("anne.hansen{i}");
        account.dn = format!("CN=anne.hansen{i},{OU}");
        account.member_of.clear();
        account.attributes.insert(
            "userPrincipalName".into(),
            format!("anne.hansen{i}@adgang.test"),
        );
        accounts.push(account);
    }
    (files, accounts)
}

#[test]
fn mass_deletion_blocked_per_supplier() {
    let (files, accounts) = many_accounts(10);
    // Keep 6 of 10 files: 4 deletions are 40 %, above the 25 % share and the minimum of 3.
    let state = desired(&files[..6]);
    let plan = run(&state, &snapshot(accounts.clone()));
    assert!(plan.is_empty(), "{plan:#?}");
    assert_eq!(
        plan.findings,
        [Finding::MassDeletionBlocked {
            supplier: "omsorg-nord".into(),
            deletions: 4,
            accounts: 10,
            max_share: 0.25
        }]
    );

    let mut overridden = settings();
    overridden.guard.overridden.insert("omsorg-nord".into());
    let plan = super::plan(&state, &snapshot(accounts), None, now(), &overridden);
    assert_eq!(plan.accounts.len(), 4);
}

#[test]
fn deletions_within_guard_allowed() {
    let (files, accounts) = many_accounts(10);
    // 2 deletions are below the minimum count; 3 are too.
    let plan = run(&desired(&files[..7]), &snapshot(accounts.clone()));
    assert_eq!(plan.accounts.len(), 3);

    let guard = DeletionGuard {
        max_share: 0.5,
        min_count: 0,
        overridden: BTreeSet::new(),
    };
    assert!(!guard.blocks("s", 5, 10));
    assert!(guard.blocks("s", 6, 10));
}

#[test]
fn duplicate_link_touches_neither() {
    let mut copy = anne_account();
    copy.dn = format!("CN=anne.copy,{OU}");
    copy.username = "anne.copy".into();
    let plan = run(&desired(&[]), &snapshot(vec![anne_account(), copy]));
    assert!(plan.is_empty());
    assert!(matches!(&plan.findings[..], [Finding::DuplicateLink { dns, .. }] if dns.len() == 2));
}

#[test]
fn supplier_folder_removed_is_guarded() {
    let (_, accounts) = many_accounts(4);
    let state = desired::from_files(std::iter::empty());
    let plan = plan(&state, &snapshot(accounts), None, now(), &settings());
    assert!(plan.is_empty(), "{plan:#?}");
    assert!(matches!(
        &plan.findings[..],
        [Finding::MassDeletionBlocked { deletions: 4, .. }]
    ));
}

#[test]
fn candidates_cover_new_users_only() {
    let state = desired(&[anne("")]);
    let fresh = username_candidates(&state, &BTreeSet::new());
    assert!(fresh.contains("anne.hansen"));
    assert!(fresh.contains("anne.hansen2"));
    let linked: BTreeSet<UserKey> = [key("anne-hansen")].into();
    assert!(username_candidates(&state, &linked).is_empty());
}
