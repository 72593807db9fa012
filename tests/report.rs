//! End to end: `adgang report` and the mail schedule against a real Samba AD and a real git
//! repository. Accounts are created with `adgang sync`, then the overview is compared with
//! what ldapsearch reads from AD.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use adgang::calendar::Calendar;
use adgang::expiry;
use adgang::notice;
use adgang::schedule::{self, ScheduleSettings};
use chrono::{NaiveDate, Utc};
use chrono_tz::Europe::Copenhagen;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::Value;
use support::setup::{Setup, day, is_enabled, supplier_yaml, today, user_yaml};
use support::smtp::{Identity, MUNICIPALITY_ADDRESS, Pki, ServerMode, SmtpServer};

const NORD: &str = "omsorg-nord";
const SYD: &str = "pleje-syd";

fn user_path(supplier: &str, name: &str) -> String {
    format!("suppliers/{supplier}/users/{name}.yaml")
}

#[allow(clippy::too_many_arguments)]
fn write_user(
    setup: &Setup,
    supplier: &str,
    name: &str,
    given: &str,
    surname: &str,
    from: i64,
    until: i64,
    extra: &str,
) {
    let yaml = user_yaml(supplier, name, given, surname, day(from), day(until), extra);
    setup.repo.write(&user_path(supplier, name), &yaml);
}

/// Two suppliers with three accounts created by sync: Anne (active, with mail and a group),
/// Søren (starts in five days, so disabled) and Birthe at the second supplier.
fn synced_setup(extra_config: &str) -> Setup {
    let setup = Setup::new();
    setup.configure(extra_config);
    setup.repo.write(
        &format!("suppliers/{NORD}/supplier.yaml"),
        &supplier_yaml(NORD, "Omsorg Nord"),
    );
    setup.repo.write(
        &format!("suppliers/{SYD}/supplier.yaml"),
        &supplier_yaml(SYD, "Pleje Syd"),
    );
    add_users_and_sync(&setup);
    setup
}

fn add_users_and_sync(setup: &Setup) {
    let anne_extra = "  mail: anne.hansen@omsorg-nord.example.org\n  groups: [Nexus-Brugere]\n";
    write_user(
        setup,
        NORD,
        "anne-hansen",
        "Anne",
        "Hansen",
        -10,
        100,
        anne_extra,
    );
    write_user(
        setup,
        NORD,
        "soeren-oestergaard",
        "Søren",
        "Østergård",
        5,
        60,
        "",
    );
    write_user(setup, SYD, "birthe-lund", "Birthe", "Lund", -1, 30, "");
    setup.repo.commit("Add users");
    setup.sync_ok();
}

fn json_overviews(setup: &Setup, extra_args: &[&str]) -> Vec<Value> {
    let mut args = vec!["report", "--print", "--output", "json"];
    args.extend(extra_args);
    let run = setup.run(&args);
    assert_eq!(run.code, 0, "{}", run.all());
    let value: Value = serde_json::from_str(&run.stdout).unwrap();
    value.as_array().unwrap().clone()
}

fn date_value(value: &Value) -> Option<NaiveDate> {
    value.as_str().map(|s| s.parse().unwrap())
}

#[test]
fn report_matches_ad() {
    let setup = synced_setup("");
    // Changes in git that are not synced yet: a new user and an extension.
    write_user(&setup, NORD, "ole-dam", "Ole", "Dam", 3, 90, "");
    let anne_extra = "  mail: anne.hansen@omsorg-nord.example.org\n  groups: [Nexus-Brugere]\n";
    write_user(
        &setup,
        NORD,
        "anne-hansen",
        "Anne",
        "Hansen",
        -10,
        200,
        anne_extra,
    );
    setup.repo.commit("Add Ole, extend Anne");

    let overviews = json_overviews(&setup, &[]);
    let ids: Vec<&str> = overviews
        .iter()
        .map(|o| o["supplier"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [NORD, SYD]);

    let ad = setup.accounts();
    assert_eq!(ad.len(), 3);
    for entry in &ad {
        let link = entry.first("adminDescription").unwrap();
        let (supplier, name) = link
            .strip_prefix("adgang:v1:")
            .unwrap()
            .split_once('/')
            .unwrap();
        let overview = overviews
            .iter()
            .find(|o| o["supplier"] == supplier)
            .unwrap_or_else(|| panic!("no overview for {supplier}"));
        let username = entry.first("sAMAccountName").unwrap();
        let row = overview["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["username"] == username)
            .unwrap_or_else(|| panic!("{username} missing from {supplier}'s overview"));

        assert_eq!(row["file"], name, "{username}");
        assert_eq!(
            row["name"],
            entry.first("displayName").unwrap(),
            "{username}"
        );
        assert_eq!(row["mail"].as_str(), entry.first("mail"), "{username}");
        assert_eq!(row["enabled"], is_enabled(entry), "{username}");
        let filetime: i64 = entry.first("accountExpires").unwrap().parse().unwrap();
        assert_eq!(
            date_value(&row["last_day"]),
            expiry::last_day_from_account_expires(filetime, Copenhagen),
            "{username}"
        );
        let mut groups: Vec<String> = entry
            .get("memberOf")
            .iter()
            .map(|dn| {
                dn.split(',')
                    .next()
                    .unwrap()
                    .trim_start_matches("CN=")
                    .to_owned()
            })
            .collect();
        groups.sort();
        let listed: Vec<String> = row["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, groups, "{username}");
    }
    let listed: usize = overviews
        .iter()
        .map(|o| o["accounts"].as_array().unwrap().len())
        .sum();
    assert_eq!(listed, ad.len(), "every account in AD and nothing else");

    let nord = &overviews[0];
    let soeren = nord["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["username"] == "soeren.oestergaard")
        .unwrap();
    assert_eq!(soeren["enabled"], false, "starts in five days");
    assert_eq!(date_value(&soeren["valid_from"]), Some(day(5)));

    let pending = nord["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["file"], "ole-dam");
    assert_eq!(pending[0]["username"], "ole.dam");

    let differences = nord["differences"].as_array().unwrap();
    let anne_expiry = differences
        .iter()
        .find(|d| d["username"] == "anne.hansen" && d["action"] == "set-expiry")
        .unwrap_or_else(|| panic!("the extension is a difference: {differences:?}"));
    let detail = anne_expiry["detail"].as_str().unwrap();
    let extended = format!("til {}", day(200).format("%d-%m-%Y"));
    assert!(detail.contains(&extended), "{detail}");
    assert!(overviews[1]["differences"].as_array().unwrap().is_empty());

    // The report plans but never writes.
    assert!(setup.account("ole.dam").is_none());
}

#[test]
fn report_supplier_filter_and_formats() {
    let setup = synced_setup("");

    let only = json_overviews(&setup, &["--supplier", SYD]);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["supplier"], SYD);

    let unknown = setup.run(&["report", "--print", "--supplier", "ukendt"]);
    assert_eq!(unknown.code, 2, "{}", unknown.all());
    assert!(unknown.stderr.contains("ukendt"), "{}", unknown.all());

    let both_csv = setup.run(&["report", "--print", "--output", "csv"]);
    assert_eq!(both_csv.code, 2, "{}", both_csv.all());
    assert!(both_csv.stderr.contains("--supplier"), "{}", both_csv.all());

    let csv_run = setup.run(&["report", "--print", "--output", "csv", "--supplier", NORD]);
    assert_eq!(csv_run.code, 0, "{}", csv_run.all());
    let rows = parse_csv(csv_run.stdout.as_bytes());
    assert_eq!(rows.len(), 3, "header and two accounts: {rows:?}");
    assert_eq!(rows[0][0], "Brugernavn");
    let anne = rows.iter().find(|r| r[0] == "anne.hansen").unwrap();
    assert_eq!(anne[1], "Anne Hansen");
    assert_eq!(anne[3], "aktiv");
    assert_eq!(anne[4], day(-10).format("%d-%m-%Y").to_string());
    assert_eq!(anne[5], day(100).format("%d-%m-%Y").to_string());
    assert_eq!(anne[6], "Nexus-Brugere");

    let text = setup.run(&["report", "--print", "--supplier", NORD]);
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(
        text.stdout
            .contains("To: sikker-post@omsorg-nord.example.org"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("Subject: Oversigt over jeres brugere"),
        "{}",
        text.stdout
    );
    let last_day = format!("sidste dag med adgang: {}", day(100).format("%d-%m-%Y"));
    assert!(text.stdout.contains(&last_day), "{}", text.stdout);
}

/// Parses a CSV file as Danish Excel would: BOM, semicolons, CRLF.
fn parse_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    let body = bytes
        .strip_prefix("\u{feff}".as_bytes())
        .expect("the file starts with a UTF-8 BOM");
    assert!(
        body.windows(2).filter(|w| w == b"\r\n").count()
            == body.iter().filter(|b| **b == b'\n').count(),
        "every row ends in CRLF"
    );
    csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(false)
        .from_reader(body)
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// Returns the mail text files in `folder`, sorted.
fn mails_in(folder: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut mails: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".txt"))
        .collect();
    mails.sort();
    mails
}

#[test]
fn report_sends_each_supplier_one_overview() {
    let setup = synced_setup("");
    let no_delivery = setup.run(&["report"]);
    assert_eq!(no_delivery.code, 2, "{}", no_delivery.all());
    assert!(
        no_delivery.stderr.contains("--print"),
        "{}",
        no_delivery.all()
    );

    let outbox = setup.work.path().join("outbox");
    let run = setup.run(&["report", "--outbox", outbox.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    for supplier in [NORD, SYD] {
        let folder = outbox.join(supplier);
        assert_eq!(mails_in(&folder), ["001.txt"], "{supplier}");
        let text = std::fs::read_to_string(folder.join("001.txt")).unwrap();
        assert!(text.starts_with("Subject: Oversigt"), "{text}");
        let csv_name = format!("001-{supplier}-{}.csv", today().format("%Y-%m"));
        let rows = parse_csv(&std::fs::read(folder.join(&csv_name)).unwrap());
        let expected = if supplier == NORD { 3 } else { 2 };
        assert_eq!(rows.len(), expected, "{supplier}: {rows:?}");
    }
    let birthe = std::fs::read_to_string(outbox.join(SYD).join("001.txt")).unwrap();
    assert!(birthe.contains("birthe.lund - Birthe Lund"), "{birthe}");
    assert!(
        !birthe.contains("anne.hansen"),
        "one supplier's mail names only its own staff"
    );
}

/// Runs `adgang sync --interval 1` until its log shows `syncs` finished syncs after a
/// finished schedule round, then stops it with SIGINT, as an operator's Ctrl-C would.
fn run_interval(setup: &Setup, syncs: usize) -> String {
    let log = setup.work.path().join("interval.log");
    let mut child = setup
        .command(&["sync", "--interval", "1", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let after_round = text
            .split_once("mail schedule round done")
            .map(|(_, rest)| rest.matches("waiting for the next sync").count())
            .unwrap_or(0);
        if after_round >= syncs {
            break text;
        }
        if started.elapsed() > Duration::from_secs(120) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("no schedule round and {syncs} syncs after it:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}\n{text}");
    text
}

/// Secure mail for the tests: a test CA, a certificate per supplier and a running SMTP
/// server with STARTTLS.
struct SecureMail {
    pki: Pki,
    server: SmtpServer,
    /// The S/MIME identity of each supplier's secure mail address, by supplier id.
    suppliers: Vec<(&'static str, Identity)>,
}

impl SecureMail {
    fn identity(&self, address: &str) -> &Identity {
        self.suppliers
            .iter()
            .find(|(supplier, _)| address == secure_address(supplier))
            .map(|(_, identity)| identity)
            .unwrap_or_else(|| panic!("no identity for {address}"))
    }
}

fn secure_address(supplier: &str) -> String {
    format!("sikker-post@{supplier}.example.org")
}

/// Sets up what [`synced_setup`] does, with mail delivery through a real SMTP server, so
/// credentials, overviews and reminders all go by S/MIME.
fn mail_synced_setup(extra_config: &str) -> (Setup, SecureMail) {
    let setup = Setup::new();
    let pki = Pki::create(&setup.work.path().join("pki"));
    let server = SmtpServer::start(setup.work.path(), &pki, ServerMode::StartTls);
    let suppliers: Vec<(&str, Identity)> = [NORD, SYD]
        .into_iter()
        .map(|s| (s, pki.issue(s, &secure_address(s), "valid")))
        .collect();

    let password_file = setup.work.path().join("smtp-password");
    std::fs::write(&password_file, support::smtp::SMTP_PASSWORD).unwrap();
    let mail = format!(
        "mail:
  smtp:
    host: 127.0.0.1
    port: {port}
    tls: starttls
    caFile: {ca}
    username: {user}
    passwordFile: {password}
  from: {MUNICIPALITY_ADDRESS}
  certificateFile: {certificate}
  keyFile: {key}
  retry:
    attempts: 2
    initialBackoffSeconds: 0.2
{extra_config}",
        port = server.port,
        ca = pki.ca_file.display(),
        user = support::smtp::SMTP_USER,
        password = password_file.display(),
        certificate = pki.municipality.certificate.display(),
        key = pki.municipality.key.display(),
    );
    setup.configure_mail(&mail);

    for (supplier, identity) in &suppliers {
        let ou = if *supplier == NORD {
            "Omsorg Nord"
        } else {
            "Pleje Syd"
        };
        let mut yaml = supplier_yaml(supplier, ou);
        yaml.push_str("  secureMailCertificate: |\n");
        for line in identity.certificate_pem().lines() {
            yaml.push_str(&format!("    {line}\n"));
        }
        setup
            .repo
            .write(&format!("suppliers/{supplier}/supplier.yaml"), &yaml);
    }
    add_users_and_sync(&setup);
    (
        setup,
        SecureMail {
            pki,
            server,
            suppliers,
        },
    )
}

/// A received message: outer recipient and subject, and the decrypted, verified body and
/// attachments.
struct Opened {
    to: String,
    subject: String,
    text: String,
    attachments: Vec<(String, Vec<u8>)>,
}

/// Decrypts a message with the recipient's key (`openssl cms -decrypt`), verifies the
/// municipality's signature (`openssl cms -verify`) and parses the inner entity.
fn open(message: &[u8], mail: &SecureMail) -> Opened {
    let outer = MessageParser::default().parse(message).unwrap();
    let to = outer
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap()
        .to_owned();
    let subject = outer.subject().unwrap_or_default().to_owned();
    let identity = mail.identity(&to);
    let signed = support::smtp::decrypt(message, identity).expect("openssl cms -decrypt");
    let entity = support::smtp::verify(&signed, &mail.pki.ca_file).expect("openssl cms -verify");
    let inner = MessageParser::default().parse(&entity).unwrap();
    let text = inner.body_text(0).unwrap_or_default().replace("\r\n", "\n");
    let attachments = inner
        .attachments()
        .map(|part| {
            let name = part.attachment_name().unwrap_or_default().to_owned();
            (name, part.contents().to_vec())
        })
        .collect();
    Opened {
        to,
        subject,
        text,
        attachments,
    }
}

#[test]
fn report_mails_each_supplier_one_overview() {
    let (setup, mail) = mail_synced_setup("");
    let credentials = mail.server.messages().len();
    assert_eq!(credentials, 3, "one credentials mail per new account");

    let run = setup.run(&["report"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let messages = mail.server.messages();
    assert_eq!(messages.len(), credentials + 2, "one overview per supplier");

    let mut opened: Vec<Opened> = messages[credentials..]
        .iter()
        .map(|m| open(m, &mail))
        .collect();
    opened.sort_by(|a, b| a.to.cmp(&b.to));
    let month = today().format("%Y-%m");
    for (supplier, mail) in [NORD, SYD].iter().zip(&opened) {
        assert_eq!(mail.to, secure_address(supplier));
        assert!(
            mail.subject.starts_with("Oversigt over jeres brugere"),
            "{}",
            mail.subject
        );
        assert!(
            !mail.subject.contains('.'),
            "no username in the clear: {}",
            mail.subject
        );
        assert_eq!(mail.attachments.len(), 1, "{supplier}");
        let (name, content) = &mail.attachments[0];
        assert_eq!(name, &format!("{supplier}-{month}.csv"));
        let rows = parse_csv(content);
        assert_eq!(rows[0][0], "Brugernavn");
        let usernames: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        if *supplier == NORD {
            assert_eq!(usernames, ["anne.hansen", "soeren.oestergaard"]);
            assert!(
                mail.text.contains("anne.hansen - Anne Hansen"),
                "{}",
                mail.text
            );
            let last_day = format!("sidste dag med adgang: {}", day(100).format("%d-%m-%Y"));
            assert!(mail.text.contains(&last_day), "{}", mail.text);
            assert!(!mail.text.contains("birthe"), "{}", mail.text);
        } else {
            assert_eq!(usernames, ["birthe.lund"]);
            assert!(
                mail.text.contains("birthe.lund - Birthe Lund"),
                "{}",
                mail.text
            );
        }
    }
}

#[test]
fn report_supplier_without_certificate_fails() {
    let (setup, mail) = mail_synced_setup("");
    let before = mail.server.messages().len();
    setup.repo.write(
        &format!("suppliers/{SYD}/supplier.yaml"),
        &supplier_yaml(SYD, "Pleje Syd"),
    );
    setup.repo.commit("Remove Pleje Syd's certificate");

    let run = setup.run(&["report"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("secureMailCertificate"),
        "{}",
        run.all()
    );
    let messages = mail.server.messages();
    assert_eq!(
        messages.len(),
        before + 1,
        "the other supplier still gets its overview"
    );
    assert_eq!(open(&messages[before], &mail).to, secure_address(NORD));
}

#[test]
fn schedule_mails_once_across_restart() {
    let (setup, mail) = mail_synced_setup("schedule:\n  overviewHour: 0\n");
    // A user whose last day is six days away, inside the reminder window on most days.
    write_user(&setup, SYD, "kim-holm", "Kim", "Holm", -30, 6, "");
    setup.repo.commit("Add Kim");
    let before = mail.server.messages().len();

    let settings = ScheduleSettings {
        overview_hour: 0,
        ..ScheduleSettings::default()
    };
    let calendar = Calendar::danish();
    let overview_due = schedule::overview_month_due(Utc::now(), &settings, &calendar)
        .unwrap()
        .is_some();
    let deadline = notice::deadline(&calendar, day(6)).unwrap();
    let window_start = calendar.working_days_before(deadline, 10).unwrap();
    let reminder_due = window_start <= today() && today() <= deadline;

    // Within a process the schedule runs once an hour, and the later syncs show that nothing
    // else goes out. The restart shows that the record, not the process, keeps mails from repeating.
    let first = run_interval(&setup, 3);
    assert_eq!(
        first.matches("mail schedule round done").count(),
        1,
        "{first}"
    );
    let second = run_interval(&setup, 2);
    assert_eq!(
        second.matches("mail schedule round done").count(),
        1,
        "{second}"
    );

    let opened: Vec<Opened> = mail.server.messages()[before..]
        .iter()
        .map(|m| open(m, &mail))
        .collect();
    let count = |to: &str, subject: &str| {
        opened
            .iter()
            .filter(|m| m.to == secure_address(to) && m.subject.starts_with(subject))
            .count()
    };
    let subjects: Vec<(&str, &str)> = opened
        .iter()
        .map(|m| (m.to.as_str(), m.subject.as_str()))
        .collect();
    assert_eq!(
        count(SYD, "Ny brugerkonto"),
        1,
        "Kim's credentials: {subjects:?}"
    );
    let overviews = usize::from(overview_due);
    assert_eq!(count(NORD, "Oversigt"), overviews, "{subjects:?}");
    assert_eq!(count(SYD, "Oversigt"), overviews, "{subjects:?}");
    assert_eq!(
        count(NORD, "Adgang til kommunens AD udløber"),
        0,
        "{subjects:?}"
    );
    assert_eq!(
        count(SYD, "Adgang til kommunens AD udløber"),
        usize::from(reminder_due),
        "{subjects:?}"
    );
    if reminder_due {
        let reminder = opened
            .iter()
            .find(|m| m.subject.starts_with("Adgang til kommunens AD udløber"))
            .unwrap();
        let line = format!(
            "kim.holm - Kim Holm: sidste dag {}, frist for forlængelse {}",
            day(6).format("%d-%m-%Y"),
            deadline.format("%d-%m-%Y")
        );
        assert!(reminder.text.contains(&line), "{}", reminder.text);
        assert!(
            !reminder.text.contains("birthe"),
            "Birthe's access ends later: {}",
            reminder.text
        );
    }

    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(setup.work.path().join("state/sent.json")).unwrap(),
    )
    .unwrap();
    if overview_due {
        let month = today().format("%Y-%m-01").to_string();
        assert_eq!(record["overviews"][NORD], month.as_str());
        assert_eq!(record["overviews"][SYD], month.as_str());
    }
    if reminder_due {
        assert_eq!(
            record["reminders"]["pleje-syd/kim-holm"],
            day(6).to_string().as_str()
        );
    }
}

#[test]
fn broken_template_stops_at_start() {
    let setup = synced_setup("templates:\n  folder: skabeloner\n");
    let folder = setup.work.path().join("skabeloner");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(
        folder.join("reminder.txt"),
        "Subject: Påmindelse\n\n{% for a in accounts %}\n{{ a.username }\n{% endfor %}\n",
    )
    .unwrap();
    let expected = format!("{} line 4", folder.join("reminder.txt").display());

    let interval = setup.run(&["sync", "--interval", "1", "--listen", "127.0.0.1:0"]);
    assert_eq!(interval.code, 2, "{}", interval.all());
    assert!(interval.stderr.contains(&expected), "{}", interval.all());

    let report = setup.run(&["report", "--print"]);
    assert_eq!(report.code, 2, "{}", report.all());
    assert!(report.stderr.contains(&expected), "{}", report.all());
}
