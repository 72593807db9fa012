//! Tests of the overview built from a snapshot and a plan, and of its CSV form.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Europe::Copenhagen;

use super::*;
use crate::desired::{self, DesiredState};
use crate::plan::{self, DeletionGuard, Settings};
use crate::templates::{Language, sample_overview};

const BASE: &str = "OU=Leverandører,DC=adgang,DC=test";
const OU: &str = "OU=Omsorg Nord\\, ApS,OU=Leverandører,DC=adgang,DC=test";
const BRUGERE: &str = "CN=Nexus-Brugere,OU=Grupper,DC=adgang,DC=test";
const VPN: &str = "CN=VPN-Brugere,OU=Grupper,DC=adgang,DC=test";

const SUPPLIER: &str = "apiVersion: adgang.example.org/v1alpha1
kind: Supplier
metadata:
  name: omsorg-nord
spec:
  displayName: Omsorg Nord ApS
  cvr: \"12345678\"
  secureMail: sikker@omsorg-nord.example.org
  organizationalUnit: Omsorg Nord, ApS
  groups: [Nexus-Brugere]
";

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-02-01T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn user_file(name: &str, given: &str, surname: &str, from: &str, until: &str) -> (String, String) {
    (
        format!("suppliers/omsorg-nord/users/{name}.yaml"),
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
  groups: [Nexus-Brugere]
"
        ),
    )
}

fn desired_state(users: &[(String, String)]) -> DesiredState {
    let mut files = vec![(
        "suppliers/omsorg-nord/supplier.yaml".to_owned(),
        SUPPLIER.to_owned(),
    )];
    files.extend(users.iter().cloned());
    let state = desired::from_files(files.iter().map(|(p, c)| (p.as_str(), c.as_bytes())));
    assert!(state.errors.is_empty(), "{:?}", state.errors);
    state
}

fn account(name: &str, username: &str, display: &str, last_day: &str) -> Account {
    let (given, surname) = display.split_once(' ').unwrap();
    let attributes: BTreeMap<String, String> = [
        ("givenName", given),
        ("sn", surname),
        ("displayName", display),
        ("userPrincipalName", &format!("{username}@adgang.test")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Account {
        dn: format!("CN={username},{OU}"),
        object_guid: format!("guid-{username}"),
        username: username.to_owned(),
        link: Some(UserKey::new("omsorg-nord", name)),
        attributes,
        account_expires: Some(expiry::account_expires(date(last_day), Copenhagen)),
        enabled: true,
        credentials_pending: false,
        member_of: [BRUGERE.to_owned()].into(),
    }
}

fn snapshot(accounts: Vec<Account>) -> DirectorySnapshot {
    DirectorySnapshot {
        accounts,
        groups: [("nexus-brugere".to_owned(), BRUGERE.to_owned())].into(),
        taken_usernames: BTreeSet::new(),
        organizational_units: [OU.to_owned()].into(),
    }
}

fn settings() -> Settings {
    Settings {
        managed_base: BASE.to_owned(),
        upn_suffix: "adgang.test".to_owned(),
        time_zone: Copenhagen,
        grace_days: 0,
        guard: DeletionGuard::default(),
    }
}

/// Builds the overview of five cases. Anne exists with a mail set by hand and a membership of
/// a group no supplier may use. Søren exists with a last day that his file has since moved.
/// Jens exists but his file is gone. Ole has a file but no account. A hand-made account sits
/// in the supplier's OU.
fn example() -> Vec<Overview> {
    let state = desired_state(&[
        user_file("anne-hansen", "Anne", "Hansen", "2027-01-04", "2027-06-30"),
        user_file("soeren-lund", "Søren", "Lund", "2027-01-11", "2027-09-30"),
        user_file("ole-dam", "Ole", "Dam", "2027-02-15", "2027-08-31"),
    ]);
    let mut anne = account("anne-hansen", "anne.hansen", "Anne Hansen", "2027-06-30");
    anne.member_of.insert(VPN.to_owned());
    anne.attributes.insert(
        "mail".to_owned(),
        "anne.hansen@omsorg-nord.example.org".to_owned(),
    );
    let soeren = account("soeren-lund", "soeren.lund", "Søren Lund", "2027-03-31");
    let mut jens = account("jens-berg", "jens.berg", "Jens Berg", "2027-04-30");
    jens.enabled = false;
    let hand_made = Account {
        dn: format!("CN=manuel,{OU}"),
        username: "manuel".to_owned(),
        ..Account::default()
    };
    let snap = snapshot(vec![soeren, hand_made, jens, anne]);
    let plan = plan::plan(&state, &snap, None, now(), &settings());
    build(
        &state,
        &snap,
        &plan,
        Copenhagen,
        Language::En,
        date("2027-02-01"),
        "abc123",
    )
}

#[test]
fn overview_lists_accounts_from_ad() {
    let overviews = example();
    assert_eq!(overviews.len(), 1);
    let overview = &overviews[0];
    assert_eq!(overview.supplier, "omsorg-nord");
    assert_eq!(overview.supplier_name, "Omsorg Nord ApS");
    assert_eq!(overview.secure_mail, "sikker@omsorg-nord.example.org");
    assert_eq!(overview.commit, "abc123");

    let usernames: Vec<&str> = overview
        .accounts
        .iter()
        .map(|a| a.username.as_str())
        .collect();
    assert_eq!(usernames, ["anne.hansen", "jens.berg", "soeren.lund"]);

    let anne = &overview.accounts[0];
    assert_eq!(anne.name, "Anne Hansen");
    assert_eq!(
        anne.mail.as_deref(),
        Some("anne.hansen@omsorg-nord.example.org")
    );
    assert!(anne.enabled);
    assert_eq!(anne.valid_from, Some(date("2027-01-04")));
    assert_eq!(anne.last_day, Some(date("2027-06-30")));
    assert_eq!(anne.groups, ["Nexus-Brugere", "VPN-Brugere"]);
    assert_eq!(anne.file, "anne-hansen");
}

#[test]
fn overview_last_day_read_from_ad() {
    let overviews = example();
    let soeren = &overviews[0].accounts[2];
    assert_eq!(
        soeren.last_day,
        Some(date("2027-03-31")),
        "AD's value, not the file's"
    );
    let jens = &overviews[0].accounts[1];
    assert!(!jens.enabled);
    assert_eq!(jens.valid_from, None, "the file is gone");
}

#[test]
fn overview_lists_users_not_created() {
    let overviews = example();
    let pending = &overviews[0].pending;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].file, "ole-dam");
    assert_eq!(pending[0].name, "Ole Dam");
    assert_eq!(pending[0].username.as_deref(), Some("ole.dam"));
    assert_eq!(pending[0].valid_from, Some(date("2027-02-15")));
    assert_eq!(pending[0].last_day, Some(date("2027-08-31")));
    assert_eq!(pending[0].blocked, None);
}

#[test]
fn overview_differences_from_plan() {
    let overviews = example();
    let differences: Vec<(&str, &str)> = overviews[0]
        .differences
        .iter()
        .map(|d| (d.username.as_str(), d.action.as_str()))
        .collect();
    assert!(
        differences.contains(&("jens.berg", "delete")),
        "{differences:?}"
    );
    assert!(
        differences.contains(&("soeren.lund", "set-expiry")),
        "{differences:?}"
    );
    assert!(
        differences.contains(&("anne.hansen", "update-attributes")),
        "the mail set by hand is removed: {differences:?}"
    );
    assert!(
        !differences.contains(&("anne.hansen", "remove-from-group")),
        "a group no supplier may use is left alone: {differences:?}"
    );
    assert!(
        !differences.iter().any(|(user, _)| *user == "ole.dam"),
        "a user not created is listed as pending: {differences:?}"
    );
    let expiry = overviews[0]
        .differences
        .iter()
        .find(|d| d.action == "set-expiry")
        .unwrap();
    assert_eq!(
        expiry.detail,
        "last day changes from 2027-03-31 to 2027-09-30"
    );
}

#[test]
fn overview_differences_in_danish() {
    let state = desired_state(&[user_file(
        "soeren-lund",
        "Søren",
        "Lund",
        "2027-01-11",
        "2027-09-30",
    )]);
    let mut soeren = account("soeren-lund", "soeren.lund", "Søren Lund", "2027-03-31");
    soeren.member_of.clear();
    soeren
        .attributes
        .insert("displayName".to_owned(), "Søren Lunde".to_owned());
    let snap = snapshot(vec![soeren]);
    let plan = plan::plan(&state, &snap, None, now(), &settings());
    let overviews = build(
        &state,
        &snap,
        &plan,
        Copenhagen,
        Language::Da,
        date("2027-02-01"),
        "abc",
    );
    let details: Vec<&str> = overviews[0]
        .differences
        .iter()
        .map(|d| d.detail.as_str())
        .collect();
    assert!(
        details.contains(&"rettes: visningsnavn \"Søren Lunde\" → \"Søren Lund\""),
        "{details:?}"
    );
    assert!(
        details.contains(&"sidste dag ændres fra 31-03-2027 til 30-09-2027"),
        "{details:?}"
    );
    assert!(
        details.contains(&"tilføjes gruppen Nexus-Brugere"),
        "{details:?}"
    );
}

#[test]
fn overview_leaves_out_unlinked_accounts() {
    let overviews = example();
    assert!(!overviews[0].accounts.iter().any(|a| a.username == "manuel"));
}

#[test]
fn overview_blocked_user_names_reason() {
    let state = desired_state(&[user_file(
        "ole-dam",
        "Ole",
        "Dam",
        "2026-10-01",
        "2027-01-31",
    )]);
    let snap = snapshot(Vec::new());
    let plan = plan::plan(&state, &snap, None, now(), &settings());
    let overviews = build(
        &state,
        &snap,
        &plan,
        Copenhagen,
        Language::Da,
        date("2027-02-01"),
        "abc",
    );
    let pending = &overviews[0].pending[0];
    assert_eq!(pending.username, None);
    let reason = pending.blocked.as_deref().unwrap();
    assert_eq!(reason, "den sidste dag (31-01-2027) er passeret");
}

#[test]
fn overview_lists_invalid_user_file() {
    let (path, content) = user_file("jens-berg", "Jens", "Berg", "2027-02-15", "2027-08-31");
    let content = content.replace("validUntil: 2027-08-31", "validUntil: 2027-01-31");
    let files = [
        (
            "suppliers/omsorg-nord/supplier.yaml".to_owned(),
            SUPPLIER.to_owned(),
        ),
        (path.clone(), content),
    ];
    let state = desired::from_files(files.iter().map(|(p, c)| (p.as_str(), c.as_bytes())));
    assert_eq!(state.errors.len(), 1, "{:?}", state.errors);
    let snap = snapshot(Vec::new());
    let plan = plan::plan(&state, &snap, None, now(), &settings());

    let overviews = build(
        &state,
        &snap,
        &plan,
        Copenhagen,
        Language::Da,
        date("2027-02-01"),
        "abc",
    );

    let pending = &overviews[0].pending;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].file, "jens-berg");
    assert_eq!(pending[0].valid_from, None);
    let reason = pending[0].blocked.as_deref().unwrap();
    assert!(reason.starts_with("filen er ugyldig"), "{reason}");
    assert!(reason.contains(&path), "{reason}");
    assert!(reason.contains("spec.validUntil"), "{reason}");
    assert!(reason.contains("2027-01-31"), "{reason}");

    let rows = parse_csv(&csv::render(&overviews[0], Language::Da));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][3], "oprettes ikke");
    assert_eq!(rows[1][4], "");
    assert!(rows[1][7].contains("spec.validUntil"), "{:?}", rows[1]);
    assert_eq!(rows[1][8], "jens-berg");

    let templates = crate::templates::Templates::load(Language::Da, None).unwrap();
    let text = templates.overview(&overviews[0]).unwrap().text;
    assert!(text.contains("Ikke oprettet endnu (1):"), "{text}");
    assert!(
        text.contains("jens-berg\n  oprettes ikke: filen er ugyldig"),
        "{text}"
    );
}

/// Splits a CSV text into rows and fields with the csv crate, as a spreadsheet would.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let body = text.strip_prefix(csv::BOM).expect("starts with a BOM");
    ::csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(false)
        .from_reader(body.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[test]
fn csv_danish_excel_format() {
    let text = csv::render(&sample_overview(), Language::Da);
    assert!(text.starts_with('\u{feff}'), "UTF-8 byte order mark first");
    assert!(text.ends_with("\r\n"));
    assert_eq!(
        text.matches("\r\n").count(),
        text.matches('\n').count(),
        "every line ends in CRLF"
    );
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 5, "header, two accounts, two pending");
    assert_eq!(rows[0][0], "Brugernavn");
    assert_eq!(rows[0][5], "Sidste dag med adgang");
    assert_eq!(
        rows[1],
        [
            "anne.hansen",
            "Anne Hansen",
            "anne.hansen@omsorg-nord.example.org",
            "aktiv",
            "04-01-2027",
            "30-06-2027",
            "Nexus-Brugere",
            "sidste dag ændres fra 30-06-2027 til 30-09-2027",
            "anne-hansen",
        ]
    );
    assert_eq!(rows[2][3], "deaktiveret");
    assert_eq!(rows[2][4], "", "no file, so no first day");
    assert_eq!(rows[3][3], "ikke oprettet endnu");
    assert_eq!(rows[4][3], "oprettes ikke");
    assert_eq!(
        rows[4][7],
        "filen er ugyldig; se kontrollen på jeres pull request"
    );
}

#[test]
fn csv_english_headers() {
    let rows = parse_csv(&csv::render(&sample_overview(), Language::En));
    assert_eq!(rows[0][0], "Username");
    assert_eq!(rows[1][3], "enabled");
    assert_eq!(
        rows[1][4], "04-01-2027",
        "CSV dates are dd-mm-yyyy in both languages"
    );
}

#[test]
fn csv_quotes_only_when_needed() {
    let mut overview = sample_overview();
    overview.accounts[0].name = "Hansen; Anne \"Annie\"".to_owned();
    let text = csv::render(&overview, Language::Da);
    assert!(text.contains(";\"Hansen; Anne \"\"Annie\"\"\";"), "{text}");
    assert!(
        text.contains("\r\nanne.hansen;"),
        "plain fields unquoted: {text}"
    );
    assert_eq!(parse_csv(&text)[1][1], "Hansen; Anne \"Annie\"");
}

#[test]
fn csv_neutralises_formulas() {
    let mut overview = sample_overview();
    overview.accounts[0].name = "=HYPERLINK(\"http://example.org\")".to_owned();
    overview.accounts[1].name = "+45 1234".to_owned();
    let rows = parse_csv(&csv::render(&overview, Language::Da));
    assert_eq!(rows[1][1], "'=HYPERLINK(\"http://example.org\")");
    assert_eq!(rows[2][1], "'+45 1234");
}

#[test]
fn overview_mail_attaches_csv() {
    let templates = Templates::load(Language::Da, None).unwrap();
    let mail = overview_mail(&templates, &sample_overview()).unwrap();
    assert_eq!(mail.attachments.len(), 1);
    let attachment = &mail.attachments[0];
    assert_eq!(attachment.filename, "omsorg-nord-2027-02.csv");
    assert_eq!(attachment.content_type, "text/csv; charset=utf-8");
    assert!(attachment.content.starts_with("\u{feff}".as_bytes()));
    assert!(mail.text.contains("anne.hansen"), "{}", mail.text);
}
