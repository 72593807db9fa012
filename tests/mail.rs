//! Secure mail against a real SMTP server (aiosmtpd with STARTTLS and AUTH) and real
//! certificates from a test CA. Every received message is opened with the `openssl cms`
//! command line, independently of the code that built it.

mod support;

use std::path::Path;

use adgang::mail::{Attachment, MailError, Mailer, OutgoingMail, TlsMode};
use adgang::server::Metrics;
use mail_parser::{MessageParser, MimeHeaders};

use support::setup::{Setup, day, is_enabled, supplier_yaml, user_yaml};
use support::signing::SshKey;
use support::smtp::{
    Identity, MUNICIPALITY_ADDRESS, Pki, ServerMode, SmtpServer, decrypt, free_port, verify,
};

const SUPPLIER_ADDRESS: &str = "sikker-post@omsorg-nord.example.org";

fn mail_to(recipient: &Identity) -> OutgoingMail {
    OutgoingMail {
        to: SUPPLIER_ADDRESS.to_owned(),
        recipient_certificate: recipient.certificate_pem(),
        subject: "Månedlig oversigt".to_owned(),
        text: "Kære Omsorg Nord\n\nHer er oversigten for januar: æ, ø og å.\n".to_owned(),
        attachments: vec![
            Attachment {
                filename: "oversigt-2027-01.csv".to_owned(),
                content_type: "text/csv; charset=utf-8".to_owned(),
                content: "brugernavn;sidste dag\nanne.hansen;2027-06-30\n"
                    .as_bytes()
                    .to_vec(),
            },
            Attachment {
                filename: "bilag.bin".to_owned(),
                content_type: "application/octet-stream".to_owned(),
                content: (0..=255u8).collect(),
            },
        ],
    }
}

/// Decrypts with `recipient`, verifies against the CA, and returns the signed entity.
fn open(message: &[u8], recipient: &Identity, pki: &Pki) -> Vec<u8> {
    let signed = decrypt(message, recipient).expect("openssl cms -decrypt failed");
    let signed_text = String::from_utf8_lossy(&signed);
    assert!(
        signed_text.contains("smime-type=signed-data"),
        "the decrypted entity is not signed data:\n{signed_text}"
    );
    verify(&signed, &pki.ca_file).expect("openssl cms -verify failed")
}

#[tokio::test]
async fn mail_opens_for_both_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let supplier = pki.issue("supplier", SUPPLIER_ADDRESS, "valid");
    let server = SmtpServer::start(dir.path(), &pki, ServerMode::StartTls);
    let metrics = Metrics::new();
    let mailer = Mailer::from_config(&pki.mail_settings(server.port, TlsMode::StartTls))
        .unwrap()
        .with_metrics(metrics.clone());

    let mail = mail_to(&supplier);
    mailer.send(&mail).await.unwrap();

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    let outer = MessageParser::default().parse(message).unwrap();
    assert_eq!(
        outer
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some(MUNICIPALITY_ADDRESS)
    );
    assert_eq!(
        outer.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some(SUPPLIER_ADDRESS)
    );
    assert_eq!(outer.subject(), Some("Månedlig oversigt"));
    let message_id = outer.message_id().unwrap();
    assert!(message_id.ends_with("@kommune.example.org"), "{message_id}");
    assert!(outer.date().is_some(), "no Date header");
    let outer_type = outer.content_type().unwrap();
    assert_eq!(outer_type.ctype(), "application");
    assert_eq!(outer_type.subtype(), Some("pkcs7-mime"));
    assert_eq!(outer_type.attribute("smime-type"), Some("enveloped-data"));
    let raw = String::from_utf8_lossy(message);
    assert!(!raw.contains("januar"), "the text travels in clear:\n{raw}");

    let commands = server.commands();
    assert!(commands.contains("AUTH tls=True"), "{commands}");
    assert!(commands.contains("MAIL tls=True"), "{commands}");
    assert!(!commands.contains("tls=False\nAUTH"), "{commands}");
    assert!(!commands.contains("AUTH tls=False"), "{commands}");

    for recipient in [&supplier, &pki.municipality] {
        let entity = open(message, recipient, &pki);
        let inner = MessageParser::default().parse(&entity).unwrap();
        let inner_type = inner.content_type().unwrap();
        assert_eq!(inner_type.ctype(), "multipart");
        assert_eq!(inner_type.subtype(), Some("mixed"));
        assert_eq!(
            inner.body_text(0).unwrap().replace("\r\n", "\n"),
            mail.text,
            "text part"
        );
        let attachments: Vec<_> = inner.attachments().collect();
        assert_eq!(attachments.len(), 2);
        for (part, expected) in attachments.iter().zip(&mail.attachments) {
            assert_eq!(part.attachment_name(), Some(expected.filename.as_str()));
            assert_eq!(
                part.contents().to_vec(),
                expected.content,
                "{}",
                expected.filename
            );
        }
        let text_type = inner.part(1).and_then(|p| p.content_type()).unwrap();
        assert_eq!(text_type.ctype(), "text");
        assert_eq!(text_type.attribute("charset"), Some("utf-8"));
        for (index, byte) in entity.iter().enumerate() {
            if *byte == b'\n' {
                assert_eq!(entity[index - 1], b'\r', "bare LF at byte {index}");
            }
        }
    }

    let stranger = pki.issue("stranger", "andre@example.net", "valid");
    assert!(
        decrypt(message, &stranger).is_err(),
        "a third key must not decrypt"
    );
    let encoded = metrics.encode();
    assert!(encoded.contains("adgang_mail_sent_total 1"), "{encoded}");
}

#[tokio::test]
async fn implicit_tls_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let supplier = pki.issue("supplier", SUPPLIER_ADDRESS, "valid");
    let server = SmtpServer::start(dir.path(), &pki, ServerMode::Tls);
    let mailer = Mailer::from_config(&pki.mail_settings(server.port, TlsMode::Tls)).unwrap();

    mailer.send(&mail_to(&supplier)).await.unwrap();

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    open(&messages[0], &supplier, &pki);
    assert!(server.commands().contains("MAIL tls=True"));
}

#[tokio::test]
async fn bad_recipient_certificates_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let server = SmtpServer::start(dir.path(), &pki, ServerMode::StartTls);
    let metrics = Metrics::new();
    let mailer = Mailer::from_config(&pki.mail_settings(server.port, TlsMode::StartTls))
        .unwrap()
        .with_metrics(metrics.clone());

    let cases = [
        ("expired", SUPPLIER_ADDRESS, "has expired"),
        (
            "wrong-eku",
            SUPPLIER_ADDRESS,
            "extendedKeyUsage lacks emailProtection",
        ),
        (
            "no-encipherment",
            SUPPLIER_ADDRESS,
            "keyUsage lacks keyEncipherment",
        ),
        (
            "valid",
            "en-anden@omsorg-nord.example.org",
            "is not issued for",
        ),
    ];
    for (kind, address, expected) in cases {
        let identity = pki.issue(&format!("bad-{kind}"), address, kind);
        let error = mailer.send(&mail_to(&identity)).await.unwrap_err();
        assert!(
            matches!(error, MailError::RecipientCertificate { .. }),
            "{kind}: {error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(expected), "{kind}: {message}");
        assert!(
            message.contains("secureMailCertificate"),
            "{kind}: {message}"
        );
        assert!(message.contains(SUPPLIER_ADDRESS), "{kind}: {message}");
    }

    let mut garbage = mail_to(&pki.municipality);
    garbage.recipient_certificate = "not a certificate".to_owned();
    let error = mailer.send(&garbage).await.unwrap_err().to_string();
    assert!(error.contains("is not a PEM certificate"), "{error}");

    assert!(server.messages().is_empty(), "no mail may be sent");
    assert!(!server.commands().contains("MAIL"), "{}", server.commands());
    let encoded = metrics.encode();
    assert!(
        encoded.contains("adgang_mail_failures_total{kind=\"recipient\"} 5"),
        "{encoded}"
    );
}

#[tokio::test]
async fn ec_recipient_opens_mail() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let supplier = pki.issue("supplier", SUPPLIER_ADDRESS, "ec");
    let server = SmtpServer::start(dir.path(), &pki, ServerMode::StartTls);
    let mailer = Mailer::from_config(&pki.mail_settings(server.port, TlsMode::StartTls)).unwrap();

    mailer.send(&mail_to(&supplier)).await.unwrap();

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let entity = open(&messages[0], &supplier, &pki);
    let inner = MessageParser::default().parse(&entity).unwrap();
    assert!(inner.body_text(0).unwrap().contains("januar"));
}

#[tokio::test]
async fn address_match_ignores_case() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let supplier = pki.issue("supplier", &SUPPLIER_ADDRESS.to_uppercase(), "valid");
    let server = SmtpServer::start(dir.path(), &pki, ServerMode::StartTls);
    let mailer = Mailer::from_config(&pki.mail_settings(server.port, TlsMode::StartTls)).unwrap();

    mailer.send(&mail_to(&supplier)).await.unwrap();
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn server_without_starttls_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let supplier = pki.issue("supplier", SUPPLIER_ADDRESS, "valid");
    let server = SmtpServer::start(dir.path(), &pki, ServerMode::Plain);
    let mailer = Mailer::from_config(&pki.mail_settings(server.port, TlsMode::StartTls)).unwrap();

    let error = mailer.send(&mail_to(&supplier)).await.unwrap_err();

    // A server without STARTTLS will not offer it on a retry either.
    assert!(
        matches!(error, MailError::Send { attempts: 1, .. }),
        "{error:?}"
    );
    assert!(server.messages().is_empty());
    let commands = server.commands();
    assert!(commands.contains("EHLO tls=False"), "{commands}");
    assert!(!commands.contains("AUTH"), "{commands}");
    assert!(!commands.contains("MAIL"), "{commands}");
}

#[tokio::test]
async fn wrong_smtp_password_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let supplier = pki.issue("supplier", SUPPLIER_ADDRESS, "valid");
    let server = SmtpServer::start(dir.path(), &pki, ServerMode::StartTls);
    let mut settings = pki.mail_settings(server.port, TlsMode::StartTls);
    settings.password = adgang::directory::Secret::new("Wrong-Password-1");
    let mailer = Mailer::from_config(&settings).unwrap();

    let error = mailer.send(&mail_to(&supplier)).await.unwrap_err();

    let message = error.to_string();
    assert!(
        matches!(error, MailError::Send { attempts: 1, .. }),
        "{error:?}"
    );
    assert!(message.contains("535"), "{message}");
    assert!(!message.contains("Wrong-Password-1"), "{message}");
    assert!(server.messages().is_empty());
    assert!(!server.commands().contains("MAIL"), "{}", server.commands());
}

#[tokio::test]
async fn untrusted_server_certificate_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let other = Pki::create(&dir.path().join("other-pki"));
    let supplier = pki.issue("supplier", SUPPLIER_ADDRESS, "valid");
    let server = SmtpServer::start(dir.path(), &pki, ServerMode::StartTls);
    let mut settings = pki.mail_settings(server.port, TlsMode::StartTls);
    settings.ca_file = other.ca_file.clone();
    let mailer = Mailer::from_config(&settings).unwrap();

    let error = mailer.send(&mail_to(&supplier)).await.unwrap_err();

    // A certificate that fails verification fails again on a retry.
    assert!(
        matches!(error, MailError::Send { attempts: 1, .. }),
        "{error:?}"
    );
    let error = error.to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(server.messages().is_empty());
    assert!(!server.commands().contains("AUTH"), "{}", server.commands());
}

#[test]
fn key_mismatch_rejected_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let supplier = pki.issue("supplier", SUPPLIER_ADDRESS, "valid");
    let mut settings = pki.mail_settings(free_port(), TlsMode::StartTls);
    settings.key_file = supplier.key.clone();

    let error = Mailer::from_config(&settings).unwrap_err();

    assert!(matches!(error, MailError::KeyMismatch { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("mail.keyFile"), "{message}");
    assert!(
        message.contains(&supplier.key.display().to_string()),
        "{message}"
    );
}

#[test]
fn certificate_for_other_sender_rejected_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let other = pki.issue("other", "someone-else@example.net", "valid");
    let mut settings = pki.mail_settings(free_port(), TlsMode::StartTls);
    settings.certificate_file = other.certificate.clone();
    settings.key_file = other.key.clone();

    let error = Mailer::from_config(&settings).unwrap_err();

    assert!(matches!(error, MailError::FromMismatch { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("someone-else@example.net"), "{message}");
    assert!(message.contains(MUNICIPALITY_ADDRESS), "{message}");
    assert!(message.contains("mail.from"), "{message}");
}

#[tokio::test]
async fn smtp_down_fails_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let supplier = pki.issue("supplier", SUPPLIER_ADDRESS, "valid");
    let metrics = Metrics::new();
    let mailer = Mailer::from_config(&pki.mail_settings(free_port(), TlsMode::StartTls))
        .unwrap()
        .with_metrics(metrics.clone());

    let error = mailer.send(&mail_to(&supplier)).await.unwrap_err();

    assert!(
        matches!(error, MailError::Send { attempts: 2, .. }),
        "{error:?}"
    );
    let encoded = metrics.encode();
    assert!(
        encoded.contains("adgang_mail_failures_total{kind=\"smtp\"} 1"),
        "{encoded}"
    );
}

// End to end through `adgang sync` against a real Samba DC.

const SUPPLIER: &str = "suppliers/omsorg-nord/supplier.yaml";
const USER: &str = "suppliers/omsorg-nord/users/anne-hansen.yaml";

/// Returns the supplier file with the certificate of `identity` as secureMailCertificate.
fn supplier_with_certificate(identity: &Identity) -> String {
    let mut yaml = supplier_yaml("omsorg-nord", "Omsorg Nord");
    yaml.push_str("  secureMailCertificate: |\n");
    for line in identity.certificate_pem().lines() {
        yaml.push_str(&format!("    {line}\n"));
    }
    yaml
}

fn mail_section(pki: &Pki, port: u16, dir: &Path) -> String {
    let password_file = dir.join("smtp-password");
    std::fs::write(
        &password_file,
        format!("{}\n", support::smtp::SMTP_PASSWORD),
    )
    .unwrap();
    format!(
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
",
        ca = pki.ca_file.display(),
        user = support::smtp::SMTP_USER,
        password = password_file.display(),
        certificate = pki.municipality.certificate.display(),
        key = pki.municipality.key.display(),
    )
}

/// Sets up a DC, a repository with one supplier and one user whose access started
/// yesterday, and a configuration that mails credentials through port `port`.
fn mail_setup(port: u16) -> (Setup, Pki, Identity) {
    let setup = Setup::new();
    let pki = Pki::create(&setup.work.path().join("pki"));
    let supplier = pki.issue("supplier", SUPPLIER_ADDRESS, "valid");
    setup.configure_mail(&mail_section(&pki, port, setup.work.path()));
    setup
        .repo
        .write(SUPPLIER, &supplier_with_certificate(&supplier));
    setup.repo.write(
        USER,
        &user_yaml(
            "omsorg-nord",
            "anne-hansen",
            "Anne",
            "Hansen",
            day(-1),
            day(100),
            "  groups: [Nexus-Brugere]\n",
        ),
    );
    setup.repo.commit("Add Anne Hansen");
    (setup, pki, supplier)
}

/// Opens the credentials mail and returns its text.
fn credentials_text(message: &[u8], recipient: &Identity, pki: &Pki) -> String {
    let entity = open(message, recipient, pki);
    let inner = MessageParser::default().parse(&entity).unwrap();
    inner.body_text(0).unwrap().replace("\r\n", "\n")
}

fn mailed_password(text: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix("Midlertidig adgangskode: "))
        .unwrap_or_else(|| panic!("no password line in:\n{text}"))
        .to_owned()
}

/// Asserts that `password` is the account's password by binding as the account over LDAPS.
/// AD rejects a bind with the right password while pwdLastSet is 0 ("must change", data
/// 773), so the check clears that flag first, as an administrator would.
fn assert_password_works(setup: &Setup, dn: &str, password: &str) {
    let must_change = setup.dc.bind(dn, password).unwrap_err();
    assert!(must_change.contains("data 773"), "{must_change}");
    setup.dc.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: pwdLastSet\npwdLastSet: -1\n"
    ));
    let wrong = setup.dc.bind(dn, "Wrong-Password-1").unwrap_err();
    assert!(wrong.contains("data 52e"), "{wrong}");
    setup.dc.bind(dn, password).unwrap();
}

/// Asserts that no file under `dir` contains `password`.
fn assert_password_in_no_file(dir: &Path, password: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_password_in_no_file(&path, password);
        } else if let Ok(content) = std::fs::read(&path) {
            let found = content
                .windows(password.len())
                .any(|window| window == password.as_bytes());
            assert!(!found, "the password is in {}", path.display());
        }
    }
}

#[test]
fn credentials_mailed_before_enable() {
    let port = free_port();
    let (setup, pki, supplier) = mail_setup(port);
    // The server stores each message, then waits 3 s before it accepts it.
    let server = SmtpServer::start_on(setup.work.path(), &pki, ServerMode::StartTls, port, 3.0);

    // Debug logs of every crate, so that a secret logged at any level would show.
    let child = setup
        .command(&["sync"])
        .env("ADGANG_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut waited = 0;
    while server.messages().is_empty() {
        assert!(waited < 600, "no mail arrived within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
    }
    let before = setup.account("anne.hansen").expect("account created");
    assert!(!is_enabled(&before), "enabled before the mail was accepted");
    assert_eq!(
        before.first("adminDisplayName"),
        Some("adgang:credentials-pending")
    );

    let output = child.wait_with_output().unwrap();
    let logs = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{logs}");
    let after = setup.account("anne.hansen").unwrap();
    assert!(
        is_enabled(&after),
        "not enabled after the mail was accepted"
    );
    assert_eq!(
        after.first("adminDisplayName"),
        Some("adgang:credentials-delivered")
    );

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let text = credentials_text(&messages[0], &supplier, &pki);
    assert!(text.contains("Brugernavn: anne.hansen"), "{text}");
    assert!(text.contains("Anne Hansen"), "{text}");
    let password = mailed_password(&text);
    assert_eq!(
        credentials_text(&messages[0], &pki.municipality, &pki),
        text,
        "the municipality's copy differs"
    );
    assert_password_works(&setup, &after.dn, &password);

    assert!(
        !logs.contains(&password),
        "the password is in the output:\n{logs}"
    );
    assert!(
        !logs.contains(support::smtp::SMTP_PASSWORD),
        "the SMTP password is in the output:\n{logs}"
    );
    assert_password_in_no_file(setup.work.path(), &password);
    assert!(
        !setup.work.path().join("credentials").exists(),
        "no credentials folder with mail delivery"
    );
}

#[test]
fn smtp_down_keeps_account_disabled() {
    let port = free_port();
    let (setup, pki, supplier) = mail_setup(port);

    let down = setup.run(&["sync"]);
    assert_eq!(down.code, 1, "{}", down.all());
    assert!(
        down.all().contains("no credentials mail for anne.hansen"),
        "{}",
        down.all()
    );
    // The summary counts what was applied: the account was created but not enabled.
    assert!(
        down.stdout
            .contains("1 created, 0 updated, 0 deleted, 0 enabled"),
        "{}",
        down.all()
    );
    let pending = setup.account("anne.hansen").expect("account created");
    assert!(!is_enabled(&pending));
    assert_eq!(
        pending.first("adminDisplayName"),
        Some("adgang:credentials-pending")
    );

    let server = SmtpServer::start_on(setup.work.path(), &pki, ServerMode::StartTls, port, 0.0);
    let up = setup.sync_ok();
    let account = setup.account("anne.hansen").unwrap();
    assert!(is_enabled(&account));
    assert_eq!(
        account.first("adminDisplayName"),
        Some("adgang:credentials-delivered")
    );

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let password = mailed_password(&credentials_text(&messages[0], &supplier, &pki));
    assert_password_works(&setup, &account.dn, &password);
    for run in [&down, &up] {
        assert!(!run.all().contains(&password), "{}", run.all());
    }
    assert_password_in_no_file(setup.work.path(), &password);
}

#[test]
fn supplier_without_certificate_gets_no_mail() {
    let port = free_port();
    let (setup, pki, _) = mail_setup(port);
    setup
        .repo
        .write(SUPPLIER, &supplier_yaml("omsorg-nord", "Omsorg Nord"));
    setup.repo.commit("Remove the certificate");
    let server = SmtpServer::start_on(setup.work.path(), &pki, ServerMode::StartTls, port, 0.0);

    let run = setup.run(&["sync"]);

    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.all().contains("spec.secureMailCertificate"),
        "{}",
        run.all()
    );
    assert!(run.all().contains("omsorg-nord"), "{}", run.all());
    assert!(server.messages().is_empty());
    let account = setup.account("anne.hansen").unwrap();
    assert!(!is_enabled(&account));
}

/// Returns the account's uSNChanged, which AD raises on every write to the object, a
/// password reset included.
fn usn_changed(setup: &Setup, username: &str) -> u64 {
    let entries = setup.dc.ldapsearch(
        &setup.dc.managed_base,
        &format!("(sAMAccountName={username})"),
        &["uSNChanged"],
    );
    assert_eq!(entries.len(), 1, "{username} not found");
    entries[0]
        .first("uSNChanged")
        .expect("uSNChanged is readable")
        .parse()
        .expect("uSNChanged is a number")
}

#[test]
fn bad_certificate_resets_no_password() {
    let port = free_port();
    let (setup, pki, _) = mail_setup(port);
    let expired = pki.issue("expired", SUPPLIER_ADDRESS, "expired");
    setup
        .repo
        .write(SUPPLIER, &supplier_with_certificate(&expired));
    setup.repo.commit("Use an expired certificate");
    let server = SmtpServer::start_on(setup.work.path(), &pki, ServerMode::StartTls, port, 0.0);

    let first = setup.run(&["sync"]);
    assert_eq!(first.code, 1, "{}", first.all());
    assert!(first.all().contains("has expired"), "{}", first.all());
    let created = usn_changed(&setup, "anne.hansen");

    // Each later run fails the same check and must leave the account untouched, where it
    // once set a new password that no one received.
    let second = setup.run(&["sync"]);
    assert_eq!(second.code, 1, "{}", second.all());
    assert!(second.all().contains("has expired"), "{}", second.all());
    assert_eq!(usn_changed(&setup, "anne.hansen"), created);
    assert!(server.messages().is_empty());
    let account = setup.account("anne.hansen").unwrap();
    assert!(!is_enabled(&account));
}

#[test]
fn credentials_mail_names_submitter() {
    let port = free_port();
    let setup = Setup::new();
    let pki = Pki::create(&setup.work.path().join("pki"));
    let supplier = pki.issue("supplier", SUPPLIER_ADDRESS, "valid");
    setup.configure_mail(&mail_section(&pki, port, setup.work.path()));
    let keys = setup.work.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let birthe = SshKey::generate(&keys, "birthe.lund");
    let ole = SshKey::generate(&keys, "ole.dam");

    let mut yaml = supplier_with_certificate(&supplier);
    yaml.push_str(&format!(
        "  contactPersons:
    - name: Birthe Lund
      username: birthe.lund
      signingKeys: [\"{}\"]
    - name: Ole Dam
      username: ole.dam
      signingKeys: [\"{}\"]
",
        birthe.public_line, ole.public_line
    ));
    setup.repo.write(SUPPLIER, &yaml);
    setup.repo.commit("Add Omsorg Nord");
    setup.repo.write(
        USER,
        &user_yaml(
            "omsorg-nord",
            "anne-hansen",
            "Anne",
            "Hansen",
            day(-1),
            day(100),
            "",
        ),
    );
    signed_commit(&setup, &birthe, "Add Anne Hansen");
    // A later edit by the other contact person does not change who added the user.
    setup.repo.write(
        USER,
        &user_yaml(
            "omsorg-nord",
            "anne-hansen",
            "Anne",
            "Hansen",
            day(-1),
            day(100),
            "  groups: [Nexus-Brugere]\n",
        ),
    );
    signed_commit(&setup, &ole, "Give Anne Hansen Nexus-Brugere");
    let server = SmtpServer::start_on(setup.work.path(), &pki, ServerMode::StartTls, port, 0.0);

    setup.sync_ok();

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let text = credentials_text(&messages[0], &supplier, &pki);
    assert!(text.contains("Att.: Birthe Lund\n"), "{text}");
    assert!(!text.contains("Ole Dam"), "{text}");
}

/// Commits everything in the work tree, signed with `key`.
fn signed_commit(setup: &Setup, key: &SshKey, message: &str) {
    let mut arguments: Vec<String> = Vec::new();
    for setting in key.git_settings() {
        arguments.push("-c".to_owned());
        arguments.push(setting);
    }
    arguments.extend(["commit", "--quiet", "-m", message].map(str::to_owned));
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    setup.repo.git(&["add", "--all"]);
    setup.repo.git(&arguments);
}

#[test]
fn validate_reports_changed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let valid = pki.issue("valid", SUPPLIER_ADDRESS, "valid");
    let wrong_eku = pki.issue("wrong-eku", SUPPLIER_ADDRESS, "wrong-eku");
    let expired = pki.issue("expired", "sikker-post@pleje-vest.example.org", "expired");
    let repo = support::setup::TestRepo::init(&dir.path().join("repo"));
    repo.write(
        "policy.yaml",
        "apiVersion: adgang.example.org/v1alpha1
kind: RepositoryPolicy
metadata:
  name: policy
spec:
  reviewers: []
",
    );
    repo.write(SUPPLIER, &supplier_with_certificate(&valid));
    // An unchanged supplier's expired certificate is not this pull request's problem.
    let mut pleje_vest = supplier_yaml("pleje-vest", "Pleje Vest");
    pleje_vest.push_str("  secureMailCertificate: |\n");
    for line in expired.certificate_pem().lines() {
        pleje_vest.push_str(&format!("    {line}\n"));
    }
    repo.write("suppliers/pleje-vest/supplier.yaml", &pleje_vest);
    let base = repo.commit("Add the suppliers");
    repo.write(SUPPLIER, &supplier_with_certificate(&wrong_eku));
    let head = repo.commit("Replace Omsorg Nord's certificate");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_adgang"))
        .arg("validate")
        .arg("--repo")
        .arg(&repo.dir)
        .args(["--base", &base, "--head", &head, "--format", "json"])
        .env("ADGANG_LOG", "warn")
        .output()
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    let problems: Vec<&serde_json::Value> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["rule"] == "certificate")
        .collect();
    assert_eq!(problems.len(), 1, "{report:#}");
    let problem = problems[0];
    assert_eq!(problem["path"], SUPPLIER, "{problem:#}");
    assert_eq!(
        problem["field"], "spec.secureMailCertificate",
        "{problem:#}"
    );
    assert!(problem["line"].as_u64().is_some(), "{problem:#}");
    let message = problem["message"].as_str().unwrap();
    assert!(message.contains("emailProtection"), "{message}");
    assert!(message.contains(SUPPLIER_ADDRESS), "{message}");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn sync_stops_on_key_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&dir.path().join("pki"));
    let supplier = pki.issue("supplier", SUPPLIER_ADDRESS, "valid");
    let mut mail = mail_section(&pki, free_port(), dir.path());
    mail = mail.replace(
        &pki.municipality.key.display().to_string(),
        &supplier.key.display().to_string(),
    );
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "directory:
  url: ldaps://127.0.0.1
  caFile: {ca}
  bindDn: CN=Administrator,CN=Users,DC=adgang,DC=test
  managedBase: OU=Leverandører,DC=adgang,DC=test
  domainBase: DC=adgang,DC=test
  upnSuffix: adgang.test
repository:
  url: repo
stateDir: state
{mail}",
            ca = pki.ca_file.display()
        ),
    )
    .unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_adgang"))
        .args(["sync", "--config"])
        .arg(&config)
        .env("ADGANG_BIND_PASSWORD", "not-used")
        .env_remove("ADGANG_SMTP_PASSWORD")
        .env_remove("ADGANG_SMTP_PASSWORD_FILE")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not match the certificate"),
        "{stderr}"
    );
    assert!(stderr.contains("mail.keyFile"), "{stderr}");
}
