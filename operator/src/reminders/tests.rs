//! Table tests of when a reminder is due.

use super::*;
use crate::calendar::{ClosingDays, MonthDay};
use crate::report::{Difference, OverviewAccount};
use crate::templates::sample_overview;

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn calendar() -> Calendar {
    Calendar::new(ClosingDays {
        fixed: vec![
            MonthDay::new(6, 5).unwrap(),
            MonthDay::new(12, 24).unwrap(),
            MonthDay::new(12, 31).unwrap(),
        ],
        dates: Default::default(),
    })
}

fn account(file: &str, last_day: Option<&str>) -> OverviewAccount {
    OverviewAccount {
        username: file.replace('-', "."),
        name: file.to_owned(),
        mail: None,
        enabled: true,
        valid_from: Some(date("2027-01-04")),
        last_day: last_day.map(date),
        groups: Vec::new(),
        file: file.to_owned(),
    }
}

fn overview(accounts: Vec<OverviewAccount>) -> Overview {
    Overview {
        accounts,
        pending: Vec::new(),
        differences: Vec::new(),
        ..sample_overview()
    }
}

fn reminded_files(mails: &[ReminderMail]) -> Vec<String> {
    mails
        .iter()
        .flat_map(|m| m.accounts.iter().map(|a| a.file.clone()))
        .collect()
}

/// Last day Wed 30 June 2027: the deadline is Mon 28 June, and 10 working days before it is
/// Mon 14 June (5 June is a Saturday in 2027, so the closing day changes nothing).
#[test]
fn reminder_window_table() {
    let cases = [
        ("2027-06-11", false, "a working day before the window"),
        ("2027-06-13", false, "the Sunday before the window"),
        ("2027-06-14", true, "first day of the window"),
        ("2027-06-21", true, "inside the window"),
        ("2027-06-28", true, "the deadline itself"),
        (
            "2027-06-29",
            false,
            "after the deadline an extension is late",
        ),
        ("2027-06-30", false, "the last day"),
    ];
    let overviews = [overview(vec![account("anne-hansen", Some("2027-06-30"))])];
    for (today, expected, why) in cases {
        let mails = due(
            &overviews,
            &calendar(),
            10,
            date(today),
            &SentRecord::default(),
        )
        .unwrap();
        assert_eq!(!mails.is_empty(), expected, "{today}: {why}");
    }
}

#[test]
fn reminder_deadline_across_easter() {
    // Last day Tue 30 March 2027: Easter Monday 29, the weekend, Good Friday 26 and Maundy
    // Thursday 25 are skipped, so the deadline is Tue 23 March.
    let overviews = [overview(vec![account("anne-hansen", Some("2027-03-30"))])];
    let mails = due(
        &overviews,
        &calendar(),
        10,
        date("2027-03-23"),
        &SentRecord::default(),
    )
    .unwrap();
    assert_eq!(mails[0].accounts[0].deadline, date("2027-03-23"));
    // Ten working days before Tue 23 March is Tue 9 March.
    let before = due(
        &overviews,
        &calendar(),
        10,
        date("2027-03-08"),
        &SentRecord::default(),
    )
    .unwrap();
    assert!(before.is_empty());
    let first = due(
        &overviews,
        &calendar(),
        10,
        date("2027-03-09"),
        &SentRecord::default(),
    )
    .unwrap();
    assert_eq!(first.len(), 1);
}

#[test]
fn reminder_one_mail_per_supplier() {
    let overviews = [overview(vec![
        account("ole-dam", Some("2027-07-02")),
        account("anne-hansen", Some("2027-06-30")),
        account("jens-berg", Some("2027-12-31")),
        account("birthe-lund", None),
    ])];
    let mails = due(
        &overviews,
        &calendar(),
        10,
        date("2027-06-21"),
        &SentRecord::default(),
    )
    .unwrap();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].supplier, "omsorg-nord");
    assert_eq!(mails[0].sent_on, date("2027-06-21"));
    assert_eq!(
        reminded_files(&mails),
        ["anne-hansen", "ole-dam"],
        "by last day"
    );
    assert_eq!(mails[0].accounts[1].deadline, date("2027-06-30"));
}

#[test]
fn reminder_sent_once_per_period() {
    let overviews = [overview(vec![account("anne-hansen", Some("2027-06-30"))])];
    let first = due(
        &overviews,
        &calendar(),
        10,
        date("2027-06-14"),
        &SentRecord::default(),
    )
    .unwrap();
    let mut sent = SentRecord::default();
    sent.record_reminder(&first[0]);

    let again = due(&overviews, &calendar(), 10, date("2027-06-15"), &sent).unwrap();
    assert!(again.is_empty(), "already reminded for this last day");

    // Extended to 30 September: a new period, reminded again in its own window.
    let extended = [overview(vec![account("anne-hansen", Some("2027-09-30"))])];
    let early = due(&extended, &calendar(), 10, date("2027-06-15"), &sent).unwrap();
    assert!(early.is_empty(), "the new window has not started");
    let later = due(&extended, &calendar(), 10, date("2027-09-20"), &sent).unwrap();
    assert_eq!(reminded_files(&later), ["anne-hansen"]);
}

#[test]
fn reminder_skips_expiry_about_to_change() {
    for action in ["set-expiry", "delete"] {
        let mut with_change = overview(vec![account("anne-hansen", Some("2027-06-30"))]);
        with_change.differences.push(Difference {
            username: "anne.hansen".to_owned(),
            file: "anne-hansen".to_owned(),
            action: action.to_owned(),
            detail: String::new(),
        });
        let mails = due(
            &[with_change],
            &calendar(),
            10,
            date("2027-06-21"),
            &SentRecord::default(),
        )
        .unwrap();
        assert!(mails.is_empty(), "{action}");
    }
}

#[test]
fn reminder_working_days_setting() {
    let overviews = [overview(vec![account("anne-hansen", Some("2027-06-30"))])];
    // Three working days before Mon 28 June is Wed 23 June.
    let cases = [("2027-06-22", false), ("2027-06-23", true)];
    for (today, expected) in cases {
        let mails = due(
            &overviews,
            &calendar(),
            3,
            date(today),
            &SentRecord::default(),
        )
        .unwrap();
        assert_eq!(!mails.is_empty(), expected, "{today}");
    }
}
