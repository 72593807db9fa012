//! Table tests of when the overview is due, of the file store and of a sending round.

use chrono::TimeZone;
use chrono_tz::Europe::Copenhagen;

use super::*;
use crate::calendar::ClosingDays;
use crate::report::outbox::OutboxSender;
use crate::templates::{Language, sample_overview};

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Converts a Copenhagen local time to an instant.
fn local(s: &str) -> DateTime<Utc> {
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    Copenhagen
        .from_local_datetime(&naive)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn settings() -> ScheduleSettings {
    ScheduleSettings::default()
}

/// Each row: local time, expected month due (or none), reason.
#[test]
fn overview_due_table() {
    let calendar = Calendar::danish();
    let cases = [
        // 1 January 2027 is a Friday and a holiday, 2 and 3 January a weekend.
        ("2027-01-01 12:00", None, "New Year's Day is a holiday"),
        ("2027-01-03 12:00", None, "Sunday"),
        (
            "2027-01-04 06:59",
            None,
            "first working day, hour not reached",
        ),
        (
            "2027-01-04 07:00",
            Some("2027-01-01"),
            "first working day at the hour",
        ),
        (
            "2027-01-20 03:00",
            Some("2027-01-01"),
            "later in the month: missed send catches up",
        ),
        // 1 May 2027 is a Saturday.
        ("2027-05-01 09:00", None, "month starts on a Saturday"),
        (
            "2027-05-03 06:30",
            None,
            "Monday before the hour, summer time",
        ),
        (
            "2027-05-03 07:00",
            Some("2027-05-01"),
            "Monday at the hour, summer time",
        ),
        // 1 December 2026 is a Tuesday.
        (
            "2026-12-01 07:00",
            Some("2026-12-01"),
            "an ordinary first day",
        ),
        (
            "2026-11-30 23:59",
            Some("2026-11-01"),
            "the evening before: still November's",
        ),
        // 1 April 2021: Maundy Thursday, 2 April Good Friday, then a weekend and Easter Monday.
        ("2021-04-01 10:00", None, "Maundy Thursday"),
        ("2021-04-05 10:00", None, "Easter Monday"),
        (
            "2021-04-06 07:00",
            Some("2021-04-01"),
            "the Tuesday after Easter",
        ),
    ];
    for (now, expected, why) in cases {
        let due = overview_month_due(local(now), &settings(), &calendar).unwrap();
        assert_eq!(due, expected.map(date), "{now}: {why}");
    }
}

#[test]
fn overview_due_closing_day() {
    let mut closing = ClosingDays::default();
    closing.dates.insert(date("2027-03-01"));
    let calendar = Calendar::new(closing);
    let due = |now| overview_month_due(local(now), &settings(), &calendar).unwrap();
    assert_eq!(due("2027-03-01 12:00"), None);
    assert_eq!(due("2027-03-02 07:00"), Some(date("2027-03-01")));
}

#[test]
fn overview_due_hour_setting() {
    let settings = ScheduleSettings {
        overview_hour: 13,
        ..settings()
    };
    let calendar = Calendar::danish();
    let due = |now| overview_month_due(local(now), &settings, &calendar).unwrap();
    assert_eq!(due("2026-12-01 12:59"), None);
    assert_eq!(due("2026-12-01 13:00"), Some(date("2026-12-01")));
}

#[test]
fn overview_not_due_after_sending() {
    let calendar = Calendar::danish();
    let suppliers = ["omsorg-nord", "pleje-syd"];
    let now = local("2027-01-04 08:00");
    let mut sent = SentRecord::default();
    sent.record_overview("omsorg-nord", date("2027-01-01"));
    sent.record_overview("pleje-syd", date("2026-12-01"));

    let due = overviews_due(now, &settings(), &calendar, suppliers, &sent).unwrap();
    assert_eq!(due, [("pleje-syd".to_owned(), date("2027-01-01"))]);

    sent.record_overview("pleje-syd", date("2027-01-01"));
    let due = overviews_due(now, &settings(), &calendar, suppliers, &sent).unwrap();
    assert!(due.is_empty(), "a restart after sending sends nothing");

    let next_month = overviews_due(
        local("2027-02-01 07:00"),
        &settings(),
        &calendar,
        suppliers,
        &sent,
    )
    .unwrap();
    assert_eq!(next_month.len(), 2);
}

#[tokio::test]
async fn file_store_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSentRecordStore::new(&dir.path().join("state"));
    assert_eq!(
        store.load().await.unwrap(),
        SentRecord::default(),
        "absent is empty"
    );

    let mut record = SentRecord::default();
    record.record_overview("omsorg-nord", date("2027-01-01"));
    record
        .reminders
        .insert("omsorg-nord/anne-hansen".to_owned(), date("2027-06-30"));
    store.save(&record).await.unwrap();
    assert_eq!(store.load().await.unwrap(), record);

    let text = std::fs::read_to_string(store.path()).unwrap();
    assert!(text.contains("\"omsorg-nord\": \"2027-01-01\""), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn file_store_corrupt_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSentRecordStore::new(dir.path());
    std::fs::write(store.path(), "{\"overviews\": 3}").unwrap();
    let error = store.load().await.unwrap_err();
    assert!(matches!(error, ScheduleError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("sent.json"), "{error}");
}

#[tokio::test]
async fn file_store_lock_excludes_second_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSentRecordStore::new(dir.path());
    let held = store.lock().await.unwrap();
    let error = store
        .lock()
        .await
        .err()
        .expect("second lock must fail while the first is held");
    assert!(matches!(error, ScheduleError::Busy { .. }), "{error}");
    drop(held);
    store.lock().await.expect("free again after drop");
}

/// Reads back the mails that an outbox folder holds for `supplier`: (subject line, file).
fn outbox_mails(folder: &Path, supplier: &str) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(folder.join(supplier)) else {
        return Vec::new();
    };
    let mut mails: Vec<(String, String)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let subject = text.lines().next().unwrap().to_owned();
            (subject, text)
        })
        .collect();
    mails.sort();
    mails
}

fn second_supplier() -> Overview {
    Overview {
        supplier: "pleje-syd".to_owned(),
        supplier_name: "Pleje Syd A/S".to_owned(),
        ..sample_overview()
    }
}

#[tokio::test]
async fn round_sends_overview_once_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let templates = Templates::load(Language::Da, None).unwrap();
    let calendar = Calendar::danish();
    let overviews = [sample_overview(), second_supplier()];
    let round = Round {
        now: local("2027-02-01 07:30"),
        settings: &settings(),
        calendar: &calendar,
        templates: &templates,
        overviews: &overviews,
    };

    let mailbox = dir.path().join("outbox");
    let outbox = OutboxSender::new(&mailbox);
    let state = dir.path().join("state");
    let report = send_due(&round, &FileSentRecordStore::new(&state), &outbox)
        .await
        .unwrap();
    assert_eq!(report.overviews, ["omsorg-nord", "pleje-syd"]);
    assert!(report.failures.is_empty());
    let sent = outbox_mails(&mailbox, "omsorg-nord");
    assert_eq!(sent.len(), 1);
    assert!(sent[0].0.contains("februar 2027"), "{}", sent[0].0);
    assert!(
        mailbox
            .join("omsorg-nord/001-omsorg-nord-2027-02.csv")
            .is_file()
    );
    assert_eq!(outbox_mails(&mailbox, "pleje-syd").len(), 1);

    // A new process with a new store over the same state folder sends nothing again.
    let report = send_due(&round, &FileSentRecordStore::new(&state), &outbox)
        .await
        .unwrap();
    assert!(report.overviews.is_empty());
    assert_eq!(outbox_mails(&mailbox, "omsorg-nord").len(), 1);
    assert_eq!(outbox_mails(&mailbox, "pleje-syd").len(), 1);
}

#[tokio::test]
async fn round_retries_failed_send() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSentRecordStore::new(&dir.path().join("state"));
    let templates = Templates::load(Language::En, None).unwrap();
    let calendar = Calendar::danish();
    let overviews = [sample_overview(), second_supplier()];
    let round = Round {
        now: local("2027-02-01 07:30"),
        settings: &settings(),
        calendar: &calendar,
        templates: &templates,
        overviews: &overviews,
    };

    // A file where pleje-syd's mail folder belongs makes its delivery fail.
    let mailbox = dir.path().join("outbox");
    std::fs::create_dir(&mailbox).unwrap();
    std::fs::write(mailbox.join("pleje-syd"), "in the way").unwrap();
    let outbox = OutboxSender::new(&mailbox);
    let report = send_due(&round, &store, &outbox).await.unwrap();
    assert_eq!(report.overviews, ["omsorg-nord"]);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].supplier, "pleje-syd");
    assert_eq!(report.failures[0].mail, "overview");

    std::fs::remove_file(mailbox.join("pleje-syd")).unwrap();
    let report = send_due(&round, &store, &outbox).await.unwrap();
    assert_eq!(report.overviews, ["pleje-syd"]);
    assert_eq!(
        outbox_mails(&mailbox, "omsorg-nord").len(),
        1,
        "not sent twice"
    );
    assert_eq!(outbox_mails(&mailbox, "pleje-syd").len(), 1);
}

#[tokio::test]
async fn round_sends_reminder_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSentRecordStore::new(&dir.path().join("state"));
    let templates = Templates::load(Language::Da, None).unwrap();
    let calendar = Calendar::danish();
    let mut overview = sample_overview();
    overview.differences.clear();
    let overviews = [overview];
    // Mid-June: no overview due (sent for June below), Anne's last day 30 June is near.
    let mut record = SentRecord::default();
    record.record_overview("omsorg-nord", date("2027-06-01"));
    store.save(&record).await.unwrap();
    let round = Round {
        now: local("2027-06-21 10:00"),
        settings: &settings(),
        calendar: &calendar,
        templates: &templates,
        overviews: &overviews,
    };

    let mailbox = dir.path().join("outbox");
    let outbox = OutboxSender::new(&mailbox);
    let report = send_due(&round, &store, &outbox).await.unwrap();
    assert_eq!(report.reminders, [("omsorg-nord".to_owned(), 1)]);
    assert!(report.overviews.is_empty());
    let sent = outbox_mails(&mailbox, "omsorg-nord");
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]
            .0
            .starts_with("Subject: Adgang til kommunens AD udløber snart"),
        "{}",
        sent[0].0
    );
    assert!(
        sent[0].1.contains("frist for forlængelse 28-06-2027"),
        "{}",
        sent[0].1
    );

    let report = send_due(&round, &store, &outbox).await.unwrap();
    assert!(report.reminders.is_empty());
    assert_eq!(outbox_mails(&mailbox, "omsorg-nord").len(), 1);
}

#[tokio::test]
async fn round_skipped_while_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSentRecordStore::new(&dir.path().join("state"));
    let templates = Templates::load(Language::Da, None).unwrap();
    let calendar = Calendar::danish();
    let overviews = [sample_overview()];
    let round = Round {
        now: local("2027-02-01 07:30"),
        settings: &settings(),
        calendar: &calendar,
        templates: &templates,
        overviews: &overviews,
    };
    let _held = FileSentRecordStore::new(&dir.path().join("state"))
        .lock()
        .await
        .unwrap();
    let mailbox = dir.path().join("outbox");
    let error = send_due(&round, &store, &OutboxSender::new(&mailbox))
        .await
        .unwrap_err();
    assert!(matches!(error, ScheduleError::Busy { .. }), "{error}");
    assert!(outbox_mails(&mailbox, "omsorg-nord").is_empty());
}

#[tokio::test]
async fn round_render_failure_fails_one_mail() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSentRecordStore::new(&dir.path().join("state"));
    // Passes the start-up check, whose sample has two accounts, but fails on three.
    let folder = dir.path().join("skabeloner");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(
        folder.join("overview.txt"),
        "Subject: Oversigt\n\n{% if accounts | length > 2 %}{{ accounts[7].username }}{% endif %}\n",
    )
    .unwrap();
    let templates = Templates::load(Language::Da, Some(&folder)).unwrap();
    let calendar = Calendar::danish();
    let mut larger = second_supplier();
    larger.accounts.push(larger.accounts[0].clone());
    let overviews = [sample_overview(), larger];
    let round = Round {
        now: local("2027-02-01 07:30"),
        settings: &settings(),
        calendar: &calendar,
        templates: &templates,
        overviews: &overviews,
    };

    let mailbox = dir.path().join("outbox");
    let report = send_due(&round, &store, &OutboxSender::new(&mailbox))
        .await
        .unwrap();
    assert_eq!(report.overviews, ["omsorg-nord"]);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].supplier, "pleje-syd");
    assert!(
        report.failures[0].error.contains("overview.txt"),
        "{}",
        report.failures[0].error
    );
    assert!(outbox_mails(&mailbox, "pleje-syd").is_empty());
    assert!(
        !store
            .load()
            .await
            .unwrap()
            .overviews
            .contains_key("pleje-syd")
    );
}

#[test]
fn sent_record_merge_keeps_later_dates() {
    let mut ours = SentRecord::default();
    ours.record_overview("omsorg-nord", date("2027-02-01"));
    ours.reminders
        .insert("omsorg-nord/anne-hansen".to_owned(), date("2027-06-30"));
    let mut theirs = SentRecord::default();
    theirs.record_overview("omsorg-nord", date("2027-01-01"));
    theirs.record_overview("pleje-syd", date("2027-02-01"));
    theirs
        .reminders
        .insert("omsorg-nord/anne-hansen".to_owned(), date("2027-09-30"));

    ours.merge(&theirs);

    assert!(ours.overview_sent("omsorg-nord", date("2027-02-01")));
    assert!(ours.overview_sent("pleje-syd", date("2027-02-01")));
    assert_eq!(
        ours.reminders["omsorg-nord/anne-hansen"],
        date("2027-09-30")
    );
}
