//! Table tests of the built-in templates in both languages, and of overrides.

use super::*;

fn load(language: Language) -> Templates {
    Templates::load(language, None).unwrap()
}

fn write(folder: &Path, name: &str, text: &str) {
    std::fs::write(folder.join(name), text).unwrap();
}

/// Each row: language, mail, expected subject, texts the body must contain.
#[test]
fn builtin_templates_render() {
    type Render = fn(&Templates) -> RenderedMail;
    let credentials: Render = |t| t.credentials(&sample_credentials()).unwrap();
    let overview: Render = |t| t.overview(&sample_overview()).unwrap();
    let reminder: Render = |t| t.reminder(&sample_reminder()).unwrap();
    let cases: [(Language, &str, Render, &str, &[&str]); 6] = [
        (
            Language::Da,
            "credentials",
            credentials,
            "Ny brugerkonto i kommunens AD",
            &[
                "Til Omsorg Nord ApS\nAtt.: Birthe Lund\n",
                "Brugernavn: anne.hansen",
                "Midlertidig adgangskode: sample-password",
                "Gyldig fra: 04-01-2027",
                "Sidste dag med adgang: 30-06-2027. Kontoen slettes automatisk efter denne dag.",
            ],
        ),
        (
            Language::En,
            "credentials",
            credentials,
            "New account in the municipality's AD",
            &[
                "To Omsorg Nord ApS\nAttn.: Birthe Lund\n",
                "Username: anne.hansen",
                "Initial password: sample-password",
                "Valid from: 2027-01-04",
                "Last day of access: 2027-06-30. The account is deleted automatically after this day.",
            ],
        ),
        (
            Language::Da,
            "overview",
            overview,
            "Oversigt over jeres brugere i kommunens AD, februar 2027",
            &[
                "Kære Omsorg Nord ApS",
                "Active Directory den 01-02-2027",
                "Brugere (2):",
                "anne.hansen - Anne Hansen <anne.hansen@omsorg-nord.example.org>\n  aktiv, gyldig fra 04-01-2027\n",
                "  sidste dag med adgang: 30-06-2027, slettes derefter automatisk\n",
                "  grupper: Nexus-Brugere\n",
                "ole.dam - Ole Dam\n  deaktiveret\n  udløber ikke\n  grupper: ingen\n",
                "Ikke oprettet endnu (2):",
                "Birthe Lund (birthe.lund): gyldig fra 15-02-2027, sidste dag 31-08-2027",
                "  oprettes ikke: filen er ugyldig; se kontrollen på jeres pull request",
                "Ændres ved næste synkronisering (1):\n  anne.hansen: sidste dag ændres fra 30-06-2027 til 30-09-2027",
            ],
        ),
        (
            Language::En,
            "overview",
            overview,
            "Your users in the municipality's AD, February 2027",
            &[
                "Dear Omsorg Nord ApS",
                "Active Directory on 2027-02-01",
                "Users (2):",
                "  enabled, valid from 2027-01-04\n",
                "  last day of access: 2027-06-30, deleted automatically after that day\n",
                "ole.dam - Ole Dam\n  disabled\n  does not expire\n  groups: none\n",
                "Not created yet (2):",
                "  not created: filen er ugyldig",
                "Changed at the next sync (1):",
            ],
        ),
        (
            Language::Da,
            "reminder",
            reminder,
            "Adgang til kommunens AD udløber snart for 1 bruger(e)",
            &["anne.hansen - Anne Hansen: sidste dag 30-06-2027, frist for forlængelse 28-06-2027"],
        ),
        (
            Language::En,
            "reminder",
            reminder,
            "Access to the municipality's AD ends soon for 1 user(s)",
            &[
                "anne.hansen - Anne Hansen: last day 2027-06-30, deadline for an extension 2027-06-28",
            ],
        ),
    ];

    for (language, name, render, subject, expected) in cases {
        let mail = render(&load(language));
        assert_eq!(mail.subject, subject, "{language} {name}");
        for text in expected {
            assert!(
                mail.text.contains(text),
                "{language} {name}: missing {text:?} in:\n{}",
                mail.text
            );
        }
        assert!(
            !mail.text.contains("{{"),
            "{language} {name}: {}",
            mail.text
        );
        assert!(!mail.text.starts_with('\n'), "{language} {name}");
        assert!(
            mail.text.ends_with("kan ikke besvares.\n") || mail.text.ends_with("are not read.\n"),
            "{language} {name}: {}",
            mail.text
        );
    }
}

#[test]
fn overview_without_accounts_says_so() {
    let mut overview = sample_overview();
    overview.accounts.clear();
    overview.pending.clear();
    overview.differences.clear();
    let da = load(Language::Da).overview(&overview).unwrap();
    assert!(
        da.text.contains("I har ingen brugere i kommunens AD."),
        "{}",
        da.text
    );
    assert!(!da.text.contains("Ikke oprettet"), "{}", da.text);
    let en = load(Language::En).overview(&overview).unwrap();
    assert!(en.text.contains("You have no users"), "{}", en.text);
}

#[test]
fn month_and_date_formats() {
    let date = NaiveDate::from_ymd_opt(2027, 3, 5).unwrap();
    assert_eq!(Language::Da.format_date(date), "05-03-2027");
    assert_eq!(Language::En.format_date(date), "2027-03-05");
    assert_eq!(Language::Da.format_month(date), "marts 2027");
    assert_eq!(Language::En.format_month(date), "March 2027");
}

#[test]
fn override_replaces_builtin() {
    let folder = tempfile::tempdir().unwrap();
    write(
        folder.path(),
        "reminder.txt",
        "Subject: Påmindelse til {{ supplier_name }}\n\n{% for a in accounts %}{{ a.username }} {{ a.deadline | date }}\n{% endfor %}",
    );
    let templates = Templates::load(Language::Da, Some(folder.path())).unwrap();
    let mail = templates.reminder(&sample_reminder()).unwrap();
    assert_eq!(mail.subject, "Påmindelse til Omsorg Nord ApS");
    assert_eq!(mail.text, "anne.hansen 28-06-2027\n");

    let overview = templates.overview(&sample_overview()).unwrap();
    assert!(
        overview.subject.starts_with("Oversigt"),
        "others stay built in"
    );
}

#[test]
fn override_syntax_error_names_file_and_line() {
    let folder = tempfile::tempdir().unwrap();
    write(
        folder.path(),
        "overview.txt",
        "Subject: Oversigt\n\n{% for a in accounts %}\n{{ a.username }\n{% endfor %}\n",
    );
    let error = Templates::load(Language::Da, Some(folder.path())).unwrap_err();
    let TemplateError::Syntax { file, line, .. } = &error else {
        panic!("expected a syntax error, got {error}");
    };
    assert!(file.ends_with("overview.txt"), "{file}");
    assert!(
        file.starts_with(&folder.path().display().to_string()),
        "{file}"
    );
    assert_eq!(*line, Some(4));
    let message = error.to_string();
    assert!(message.contains("overview.txt line 4"), "{message}");
}

#[test]
fn override_unknown_variable_fails_at_load() {
    let folder = tempfile::tempdir().unwrap();
    write(
        folder.path(),
        "credentials.txt",
        "Subject: Ny bruger\n\nBrugernavn: {{ username }}\nAdgangskode: {{ pasword }}\n",
    );
    let error = Templates::load(Language::Da, Some(folder.path())).unwrap_err();
    let TemplateError::Render {
        file,
        line,
        message,
    } = &error
    else {
        panic!("expected a render error, got {error}");
    };
    assert!(file.ends_with("credentials.txt"), "{file}");
    assert_eq!(*line, Some(4));
    assert!(message.contains("`pasword`"), "{message}");
}

#[test]
fn override_unknown_filter_fails_at_load() {
    let folder = tempfile::tempdir().unwrap();
    write(
        folder.path(),
        "reminder.txt",
        "Subject: Påmindelse\n\n{% for a in accounts %}{{ a.last_day | dato }}{% endfor %}\n",
    );
    let error = Templates::load(Language::Da, Some(folder.path())).unwrap_err();
    assert!(
        matches!(
            error,
            TemplateError::Syntax { .. } | TemplateError::Render { .. }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("reminder.txt"), "{error}");
}

#[test]
fn override_without_subject_rejected() {
    let folder = tempfile::tempdir().unwrap();
    write(folder.path(), "overview.txt", "Kære {{ supplier_name }}\n");
    let error = Templates::load(Language::En, Some(folder.path())).unwrap_err();
    assert!(
        matches!(error, TemplateError::MissingSubject { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("Subject:"), "{error}");
}

#[test]
fn override_unknown_file_rejected() {
    let folder = tempfile::tempdir().unwrap();
    write(folder.path(), "overveiw.txt", "Subject: x\n");
    let error = Templates::load(Language::Da, Some(folder.path())).unwrap_err();
    assert!(
        matches!(error, TemplateError::UnknownFile { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("overveiw.txt"), "{error}");
}

#[test]
fn override_folder_missing_named() {
    let folder = tempfile::tempdir().unwrap();
    let missing = folder.path().join("skabeloner");
    let error = Templates::load(Language::Da, Some(&missing)).unwrap_err();
    assert!(matches!(error, TemplateError::Read { .. }), "{error}");
    assert!(error.to_string().contains("skabeloner"), "{error}");
}

#[test]
fn credentials_without_contact_persons() {
    let mut mail = sample_credentials();
    mail.attention.clear();
    let da = load(Language::Da).credentials(&mail).unwrap();
    assert!(da.text.contains("Att.: kontaktpersonen\n"), "{}", da.text);
}

#[test]
fn override_subject_naming_person_rejected() {
    let cases = [
        (
            "credentials.txt",
            "Subject: Ny konto til {{ name }}\n\n{{ password }}\n",
        ),
        (
            "credentials.txt",
            "Subject: Konto {{ username }}\n\ntekst\n",
        ),
        (
            "reminder.txt",
            "Subject: Udløber: {% for a in accounts %}{{ a.username }}{% endfor %}\n\ntekst\n",
        ),
    ];
    for (name, text) in cases {
        let folder = tempfile::tempdir().unwrap();
        write(folder.path(), name, text);
        let error = Templates::load(Language::Da, Some(folder.path())).unwrap_err();
        assert!(
            matches!(
                error,
                TemplateError::SubjectVariable { .. } | TemplateError::SubjectSyntax { .. }
            ),
            "{name}: {error}"
        );
        assert!(error.to_string().contains(name), "{error}");
    }
}

/// Each row: file, template text, the variable the error must name. None of these subjects
/// shows a whole sample value, so only the structural check catches them.
#[test]
fn override_subject_variable_rejected() {
    let cases = [
        (
            "credentials.txt",
            "Subject: Til {{ attention | join(\", \") }}\n\n{{ password }}\n",
            "attention",
        ),
        (
            "overview.txt",
            "Subject: Oversigt {{ pending[0].name }}\n\ntekst\n",
            "pending",
        ),
        (
            "credentials.txt",
            "Subject: Konto {{ password[:10] }}\n\n{{ password }}\n",
            "password",
        ),
        (
            "credentials.txt",
            "Subject: {{ 'Ny' if not password is none else 'x' }}\n\n{{ password }}\n",
            "password",
        ),
        (
            "reminder.txt",
            "Subject: {{ accounts | length }} af {{ accounts[0].last_day | date }}\n\nx\n",
            "accounts",
        ),
    ];
    for (name, text, variable) in cases {
        let folder = tempfile::tempdir().unwrap();
        write(folder.path(), name, text);
        let error = Templates::load(Language::Da, Some(folder.path())).expect_err(text);
        assert!(
            matches!(error, TemplateError::SubjectVariable { .. }),
            "{name}: {error}"
        );
        assert!(error.to_string().contains(name), "{error}");
        assert!(
            error.to_string().contains(&format!("{variable:?}")),
            "{error}"
        );
    }
}

#[test]
fn override_subject_counts_and_month_allowed() {
    let folder = tempfile::tempdir().unwrap();
    let text = "Subject: {{ supplier_name }}: {{ pending|length }} nye, {{ generated_on | month }}\n\
                \n{{ accounts | length }}\n";
    write(folder.path(), "overview.txt", text);
    let templates = Templates::load(Language::Da, Some(folder.path())).unwrap();
    let mail = templates.overview(&sample_overview()).unwrap();
    assert_eq!(mail.subject, "Omsorg Nord ApS: 2 nye, februar 2027");
}

#[test]
fn override_subject_statement_rejected() {
    let folder = tempfile::tempdir().unwrap();
    let text = "Subject: {% if supplier %}Oversigt{% endif %}\n\ntekst\n";
    write(folder.path(), "overview.txt", text);
    let error = Templates::load(Language::Da, Some(folder.path())).unwrap_err();
    assert!(
        matches!(error, TemplateError::SubjectSyntax { .. }),
        "{error}"
    );
}

#[test]
fn credentials_without_password_rejected() {
    let folder = tempfile::tempdir().unwrap();
    let text = "Subject: Ny konto\n\nBrugernavn: {{ username }}\n";
    write(folder.path(), "credentials.txt", text);
    let error = Templates::load(Language::Da, Some(folder.path())).unwrap_err();
    assert!(
        matches!(error, TemplateError::MissingPassword { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("credentials.txt"), "{error}");
}

#[test]
fn override_with_byte_order_mark_loads() {
    let folder = tempfile::tempdir().unwrap();
    let text =
        "\u{feff}Subject: Oversigt {{ generated_on | month }}\r\n\r\nKære {{ supplier_name }}\r\n";
    write(folder.path(), "overview.txt", text);
    let templates = Templates::load(Language::Da, Some(folder.path())).unwrap();
    let mail = templates.overview(&sample_overview()).unwrap();
    assert_eq!(mail.subject, "Oversigt februar 2027");
    assert!(
        mail.text.starts_with("Kære Omsorg Nord ApS"),
        "{}",
        mail.text
    );
}

#[test]
fn credentials_debug_hides_password() {
    let debug = format!("{:?}", sample_credentials());
    assert!(!debug.contains("sample-password"), "{debug}");
    assert!(debug.contains("anne.hansen"), "{debug}");
}

/// Whitespace control at the start of the body (`{{-`, `{%-`) or at the end of the subject
/// line (`-}}`) must not join a body line to the unencrypted subject. Each row: file,
/// template text, expected subject.
#[test]
fn body_whitespace_control_stays_out_of_subject() {
    let cases = [
        (
            "overview.txt",
            "Subject: Oversigt \n{{- pending[0].name if pending else '' }}\n\ntekst\n",
            "Oversigt",
        ),
        (
            "credentials.txt",
            "Subject: Ny konto\n{{- password[:8] }} {{ name | reverse }}\n\n{{ password }}\n",
            "Ny konto",
        ),
        (
            "overview.txt",
            "Subject: Oversigt\n{%- for p in pending %} {{ p.name }}{% endfor %}\n\ntekst\n",
            "Oversigt",
        ),
        (
            "overview.txt",
            "Subject: Oversigt {{ supplier_name -}}\n   {{ pending[0].username }}\n\ntekst\n",
            "Oversigt Omsorg Nord ApS",
        ),
    ];
    let mut credentials = sample_credentials();
    credentials.name = "Jens Poulsen".to_owned();
    let mut overview = sample_overview();
    overview.pending[0].name = "Jens Poulsen".to_owned();
    for (name, text, subject) in cases {
        let folder = tempfile::tempdir().unwrap();
        write(folder.path(), name, text);
        let templates = Templates::load(Language::Da, Some(folder.path())).expect(text);
        let mail = match name {
            "credentials.txt" => templates.credentials(&credentials),
            _ => templates.overview(&overview),
        }
        .unwrap();
        assert_eq!(mail.subject, subject, "{text}");
    }
}

#[test]
fn body_keeps_line_after_subject() {
    let folder = tempfile::tempdir().unwrap();
    let text = "Subject: Ny konto\n{{- password[:8] }} {{ name | reverse }}\n\n{{ password }}\n";
    write(folder.path(), "credentials.txt", text);
    let templates = Templates::load(Language::Da, Some(folder.path())).unwrap();
    let mail = templates.credentials(&sample_credentials()).unwrap();
    assert_eq!(mail.subject, "Ny konto");
    assert_eq!(mail.text, "sample-p nesnaH ennA\n\nsample-password\n");
}

/// Each row: file, template text. Every subject renders a line break, which would end the
/// header and start the body or another header.
#[test]
fn subject_with_line_break_rejected() {
    let cases = [
        (
            "overview.txt",
            "Subject: Oversigt{{ '\\n' }}Bcc: x\n\ntekst\n",
        ),
        (
            "overview.txt",
            "Subject: Oversigt{{ \"\\r\\n\" }}x\n\ntekst\n",
        ),
    ];
    for (name, text) in cases {
        let folder = tempfile::tempdir().unwrap();
        write(folder.path(), name, text);
        let error = Templates::load(Language::Da, Some(folder.path())).expect_err(text);
        assert!(
            matches!(error, TemplateError::SubjectLineBreak { .. }),
            "{text}: {error}"
        );
        assert!(error.to_string().contains(name), "{error}");
    }
}

#[test]
fn subject_line_break_from_data_rejected() {
    let templates = load(Language::Da);
    let mut overview = sample_overview();
    overview.supplier_name = "Omsorg Nord ApS\nBcc: x@example.org".to_owned();
    let folder = tempfile::tempdir().unwrap();
    write(
        folder.path(),
        "overview.txt",
        "Subject: Oversigt for {{ supplier_name }}\n\ntekst\n",
    );
    let edited = Templates::load(Language::Da, Some(folder.path())).unwrap();
    let error = edited.overview(&overview).unwrap_err();
    assert!(
        matches!(error, TemplateError::SubjectLineBreak { .. }),
        "{error}"
    );
    assert!(
        templates.overview(&overview).is_ok(),
        "the built-in subject does not use supplier_name"
    );
}

#[test]
fn body_error_line_counts_subject() {
    let folder = tempfile::tempdir().unwrap();
    let text = "\n\nSubject: Oversigt\n\n{% for a in accounts %}\n{{ a.usernme }}\n{% endfor %}\n";
    write(folder.path(), "overview.txt", text);
    let error = Templates::load(Language::Da, Some(folder.path())).unwrap_err();
    let TemplateError::Render { line, message, .. } = &error else {
        panic!("expected a render error, got {error}");
    };
    assert_eq!(*line, Some(6), "{error}");
    assert!(message.contains("`a.usernme`"), "{message}");
}

#[test]
fn subject_error_line_counts_blank_lines() {
    let folder = tempfile::tempdir().unwrap();
    let text = "\n\nSubject: Oversigt {{ generated_on | maaned }}\n\ntekst\n";
    write(folder.path(), "overview.txt", text);
    let error = Templates::load(Language::Da, Some(folder.path())).unwrap_err();
    let (TemplateError::Syntax { line, .. } | TemplateError::Render { line, .. }) = &error else {
        panic!("expected a syntax or render error, got {error}");
    };
    assert_eq!(*line, Some(3), "{error}");
    assert!(error.to_string().contains("overview.txt line 3"), "{error}");
}
