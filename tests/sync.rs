//! End to end: a real git repository reconciled into a real Samba AD by the `adgang` binary.

mod support;

use std::os::unix::fs::PermissionsExt;

use adgang::expiry;
use chrono_tz::Europe::Copenhagen;
use support::setup::{Setup, day, is_enabled, supplier_yaml, user_yaml};

const SUPPLIER: &str = "suppliers/omsorg-nord/supplier.yaml";
const OU: &str = "Omsorg Nord, ApS";

fn user_path(name: &str) -> String {
    format!("suppliers/omsorg-nord/users/{name}.yaml")
}

/// A setup with one supplier and the given users (name, given name, surname, first day offset,
/// last day offset, extra spec lines).
fn setup_with(users: &[(&str, &str, &str, i64, i64, &str)]) -> Setup {
    let setup = Setup::new();
    setup
        .repo
        .write(SUPPLIER, &supplier_yaml("omsorg-nord", OU));
    for (name, given, surname, from, until, extra) in users {
        write_user(&setup, name, given, surname, *from, *until, extra);
    }
    setup.repo.commit("Add users");
    setup
}

fn write_user(
    setup: &Setup,
    name: &str,
    given: &str,
    surname: &str,
    from: i64,
    until: i64,
    extra: &str,
) {
    let yaml = user_yaml(
        "omsorg-nord",
        name,
        given,
        surname,
        day(from),
        day(until),
        extra,
    );
    setup.repo.write(&user_path(name), &yaml);
}

const BRUGERE: &str = "  groups: [Nexus-Brugere]\n";

#[test]
fn create_then_nothing_left() {
    let setup = setup_with(&[
        ("anne-hansen", "Anne", "Hansen", -10, 100, BRUGERE),
        ("soeren-oestergaard", "Søren", "Østergård", -1, 30, ""),
    ]);

    let plan = setup.run(&["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("anne.hansen"), "{}", plan.all());
    assert!(setup.accounts().is_empty(), "plan must not write");

    setup.sync_ok();
    let anne = setup.account("anne.hansen").expect("anne.hansen created");
    assert!(is_enabled(&anne));
    assert_eq!(anne.first("displayName"), Some("Anne Hansen"));
    assert_eq!(
        anne.first("adminDescription"),
        Some("adgang:v1:omsorg-nord/anne-hansen")
    );
    assert_eq!(
        anne.first("adminDisplayName"),
        Some("adgang:credentials-delivered")
    );
    assert_eq!(
        anne.first("pwdLastSet"),
        Some("0"),
        "password must be changed at first logon"
    );
    let expected = expiry::account_expires(day(100), Copenhagen).to_string();
    assert_eq!(anne.first("accountExpires"), Some(expected.as_str()));
    let groups = anne.get("memberOf");
    assert!(
        groups.iter().any(|g| g.starts_with("CN=Nexus-Brugere,")),
        "{groups:?}"
    );
    assert!(anne.dn.contains("OU=Omsorg Nord\\, ApS"), "{}", anne.dn);

    let soeren = setup
        .account("soeren.oestergaard")
        .expect("Danish letters transliterated");
    assert_eq!(soeren.first("sn"), Some("Østergård"));

    let credentials = setup.credentials_dir().join("omsorg-nord/anne.hansen.txt");
    let mode = std::fs::metadata(&credentials)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let again = setup.sync_ok();
    assert!(again.stdout.contains("No changes"), "{}", again.all());
    assert_eq!(setup.accounts().len(), 2);
}

#[test]
fn rename_and_groups_update_in_place() {
    let setup = setup_with(&[("anne-hansen", "Anne", "Hansen", -10, 100, BRUGERE)]);
    setup.sync_ok();
    let before = setup.account("anne.hansen").unwrap();

    write_user(
        &setup,
        "anne-hansen",
        "Anne",
        "Holm, jr.",
        -10,
        120,
        "  groups: [Nexus-Hjemmepleje]\n",
    );
    setup.repo.commit("Rename Anne, extend, change groups");
    setup.sync_ok();

    let after = setup
        .account("anne.hansen")
        .expect("username never changes");
    assert_eq!(after.dn, before.dn);
    assert_eq!(after.first("objectGUID"), before.first("objectGUID"));
    assert_eq!(after.first("sn"), Some("Holm, jr."));
    assert_eq!(after.first("displayName"), Some("Anne Holm, jr."));
    let expected = expiry::account_expires(day(120), Copenhagen).to_string();
    assert_eq!(after.first("accountExpires"), Some(expected.as_str()));
    let groups = after.get("memberOf");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert!(groups[0].starts_with("CN=Nexus-Hjemmepleje,"), "{groups:?}");
}

#[test]
fn username_change_rejected() {
    let setup = setup_with(&[("anne-hansen", "Anne", "Hansen", -10, 100, "")]);
    setup.sync_ok();
    write_user(
        &setup,
        "anne-hansen",
        "Anne",
        "Hansen",
        -10,
        100,
        "  username: ahansen\n",
    );
    setup.repo.commit("Try to change the username");

    let run = setup.run(&["sync"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("never changes"), "{}", run.all());
    assert!(setup.account("anne.hansen").is_some());
    assert!(setup.account("ahansen").is_none());
}

#[test]
fn future_start_created_disabled() {
    let setup = setup_with(&[("mette-kjaer", "Mette", "Kjær", 5, 100, "")]);
    setup.sync_ok();
    let mette = setup
        .account("mette.kjaer")
        .expect("created before its start");
    assert!(!is_enabled(&mette), "disabled until validFrom");
    assert!(
        setup
            .credentials_dir()
            .join("omsorg-nord/mette.kjaer.txt")
            .exists()
    );
}

#[test]
fn shortened_to_past_deletes() {
    let setup = setup_with(&[
        ("anne-hansen", "Anne", "Hansen", -10, 100, ""),
        ("jens-poulsen", "Jens", "Poulsen", -10, 100, ""),
        ("line-berg", "Line", "Berg", -10, 100, ""),
    ]);
    setup.sync_ok();
    assert_eq!(setup.accounts().len(), 3);

    // validUntil yesterday: the last day of access has passed.
    write_user(&setup, "anne-hansen", "Anne", "Hansen", -10, -1, "");
    // The employment ended yesterday.
    write_user(
        &setup,
        "jens-poulsen",
        "Jens",
        "Poulsen",
        -10,
        100,
        "    end: PLACEHOLDER\n",
    );
    let path = setup.repo.dir.join(user_path("jens-poulsen"));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("PLACEHOLDER", &day(-1).to_string());
    std::fs::write(&path, text).unwrap();
    // The file is removed.
    setup.repo.remove(&user_path("line-berg"));
    setup.repo.commit("End three accesses");

    let run = setup.run(&["sync", "--allow-mass-deletion", "omsorg-nord"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(setup.accounts().is_empty(), "{:?}", setup.accounts());
    assert!(run.stdout.contains("employment ended"), "{}", run.all());
    assert!(run.stdout.contains("file removed"), "{}", run.all());
    assert!(
        run.stdout.contains("last day of access has passed"),
        "{}",
        run.all()
    );
}

#[test]
fn drift_put_back_and_unmanaged_left_alone() {
    let setup = setup_with(&[("anne-hansen", "Anne", "Hansen", -10, 100, BRUGERE)]);
    setup.sync_ok();
    let anne = setup.account("anne.hansen").unwrap();
    let ou = anne.dn.split_once(',').unwrap().1.to_owned();

    // Changes made by hand: an attribute, the expiry, a managed and an unmanaged group.
    setup.dc.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: displayName\ndisplayName: Anne H.\n-\n\
         replace: accountExpires\naccountExpires: 0\n-\n\n\
         dn: CN=Nexus-Brugere,OU=Grupper,DC=adgang,DC=test\nchangetype: modify\n\
         delete: member\nmember: {dn}\n-\n\n\
         dn: CN=VPN-Brugere,OU=Grupper,DC=adgang,DC=test\nchangetype: modify\n\
         add: member\nmember: {dn}\n-\n",
        dn = anne.dn
    ));
    // An account in the supplier's OU that Adgang did not create.
    setup.dc.ldapmodify(&format!(
        "dn: CN=manuel,{ou}\nchangetype: add\nobjectClass: user\nsAMAccountName: manuel\n\
         displayName: Made By Hand\n"
    ));

    let run = setup.sync_ok();
    assert!(
        run.stdout.contains("puts back a change made in AD"),
        "{}",
        run.all()
    );
    assert!(run.stdout.contains("CN=manuel"), "{}", run.all());
    assert!(run.stdout.contains("VPN-Brugere"), "{}", run.all());

    let anne = setup.account("anne.hansen").unwrap();
    assert_eq!(anne.first("displayName"), Some("Anne Hansen"));
    let expected = expiry::account_expires(day(100), Copenhagen).to_string();
    assert_eq!(anne.first("accountExpires"), Some(expected.as_str()));
    let groups = anne.get("memberOf");
    assert!(
        groups.iter().any(|g| g.starts_with("CN=Nexus-Brugere,")),
        "{groups:?}"
    );
    assert!(
        groups.iter().any(|g| g.starts_with("CN=VPN-Brugere,")),
        "unmanaged group kept"
    );

    let manuel = setup
        .account("manuel")
        .expect("unmanaged account never deleted");
    assert_eq!(manuel.first("displayName"), Some("Made By Hand"));
    assert_eq!(manuel.first("adminDescription"), None);
}

#[test]
fn removed_supplier_file_freezes_users() {
    let setup = setup_with(&[("anne-hansen", "Anne", "Hansen", -10, 100, "")]);
    setup.sync_ok();
    setup.repo.write(
        SUPPLIER,
        "apiVersion: adgang.example.org/v1alpha1\nkind: Supplier\n  bad: [\n",
    );
    setup.repo.commit("Break supplier.yaml");
    let run = setup.run(&["sync"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains(SUPPLIER), "{}", run.all());
    assert!(setup.account("anne.hansen").is_some());
}

#[test]
fn parse_error_deletes_nothing() {
    let setup = setup_with(&[("anne-hansen", "Anne", "Hansen", -10, 100, "")]);
    setup.sync_ok();

    let cases = [
        ("invalid YAML", "apiVersion: [\n"),
        (
            "unknown field",
            "apiVersion: adgang.example.org/v1alpha1\nkind: SupplierUser\nmetadata:\n  name: anne-hansen\nspec:\n  cpr: x\n",
        ),
        (
            "date that does not exist",
            &*user_yaml(
                "omsorg-nord",
                "anne-hansen",
                "Anne",
                "Hansen",
                day(-10),
                day(100),
                "",
            )
            .replace(&day(100).to_string(), "2027-02-30"),
        ),
    ];
    for (case, content) in cases {
        setup.repo.write(&user_path("anne-hansen"), content);
        setup.repo.commit(case);
        let run = setup.run(&["sync"]);
        assert_eq!(run.code, 1, "{case}: {}", run.all());
        assert!(
            run.stdout.contains(&user_path("anne-hansen")),
            "{case}: {}",
            run.all()
        );
        let anne = setup
            .account("anne.hansen")
            .unwrap_or_else(|| panic!("{case}: deleted"));
        assert!(is_enabled(&anne), "{case}");
    }
}

#[test]
fn mass_deletion_guard_stops_supplier() {
    let names = ["a-one", "b-two", "c-three", "d-four", "e-five"];
    let users: Vec<_> = names
        .iter()
        .map(|n| (*n, "Test", *n, -1, 100, ""))
        .collect();
    let setup = setup_with(&users);
    setup.sync_ok();
    assert_eq!(setup.accounts().len(), 5);

    for name in &names[..4] {
        setup.repo.remove(&user_path(name));
    }
    setup.repo.commit("Remove four of five");
    let run = setup.run(&["sync"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout.contains("--allow-mass-deletion omsorg-nord"),
        "{}",
        run.all()
    );
    assert_eq!(setup.accounts().len(), 5, "nothing deleted");

    let run = setup.run(&["sync", "--allow-mass-deletion", "omsorg-nord"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(setup.accounts().len(), 1);
}

#[test]
fn rewritten_history_refused_until_accepted() {
    let setup = setup_with(&[("anne-hansen", "Anne", "Hansen", -10, 100, "")]);
    setup.sync_ok();

    write_user(&setup, "jens-poulsen", "Jens", "Poulsen", -1, 50, "");
    setup.repo.git(&["add", "--all"]);
    setup
        .repo
        .git(&["commit", "--quiet", "--amend", "-m", "Rewritten"]);
    let head = setup.repo.git(&["rev-parse", "HEAD"]);

    let run = setup.run(&["sync"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.all().contains("--accept-rewritten-history"),
        "{}",
        run.all()
    );
    assert!(setup.account("jens.poulsen").is_none(), "nothing applied");

    let run = setup.run(&["sync", "--accept-rewritten-history", &head]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(setup.account("jens.poulsen").is_some());
}

#[test]
fn killed_runs_completed_by_next() {
    let users: Vec<(String, String)> = (0..60)
        .map(|i| (format!("user-{i:02}"), format!("Person{i:02}")))
        .collect();
    let setup = Setup::new();
    setup
        .repo
        .write(SUPPLIER, &supplier_yaml("omsorg-nord", OU));
    for (name, surname) in &users {
        write_user(&setup, name, "Test", surname, -1, 100, BRUGERE);
    }
    setup.repo.commit("Add 60 users");

    // Kill the process once some accounts exist, then stop the directory during a second run.
    let mut child = setup
        .command(&["sync"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_accounts(&setup, 1);
    child.kill().unwrap();
    child.wait().unwrap();

    let created = setup.accounts().len();
    let dc_run = setup
        .command(&["sync"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_accounts(&setup, created + 1);
    let mut setup = setup;
    setup.dc.stop();
    let output = dc_run.wait_with_output().unwrap();
    assert_ne!(
        output.status.code(),
        Some(0),
        "a run against a stopped directory must fail"
    );
    setup.dc.restart();

    let run = setup.sync_ok();
    let again = setup.sync_ok();
    assert!(
        again.stdout.contains("No changes"),
        "{}\n{}",
        run.all(),
        again.all()
    );

    let accounts = setup.accounts();
    assert_eq!(accounts.len(), 60, "no duplicate and no lost user");
    for account in &accounts {
        assert_eq!(
            account.first("adminDisplayName"),
            Some("adgang:credentials-delivered"),
            "{}",
            account.dn
        );
        assert!(is_enabled(account), "{}", account.dn);
        let username = account.first("sAMAccountName").unwrap();
        assert!(
            setup
                .credentials_dir()
                .join(format!("omsorg-nord/{username}.txt"))
                .exists()
        );
    }
}

fn wait_for_accounts(setup: &Setup, count: usize) {
    for _ in 0..600 {
        if setup.accounts().len() >= count {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no account appeared within 30 s");
}

#[test]
fn wrong_ca_rejected() {
    let setup = setup_with(&[("anne-hansen", "Anne", "Hansen", -10, 100, "")]);
    let other_ca = setup.work.path().join("other-ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=Other CA",
        ])
        .arg("-keyout")
        .arg(setup.work.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(status.status.success());
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        config.replace(
            &setup.dc.ca_file.display().to_string(),
            &other_ca.display().to_string(),
        ),
    )
    .unwrap();

    let run = setup.run(&["sync"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("other-ca.pem"), "{}", run.all());
    assert!(setup.accounts().is_empty());
}

#[test]
fn wrong_bind_password_reported() {
    let setup = setup_with(&[("anne-hansen", "Anne", "Hansen", -10, 100, "")]);
    std::fs::write(setup.work.path().join("bind-password"), "Wrong-Password-42").unwrap();
    let run = setup.run(&["sync"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains(&setup.dc.bind_dn), "{}", run.all());
    assert!(
        !run.all().contains("Wrong-Password-42"),
        "the password must never be printed"
    );
    assert!(setup.accounts().is_empty());
}

#[test]
fn unreachable_directory_reported() {
    let setup = setup_with(&[("anne-hansen", "Anne", "Hansen", -10, 100, "")]);
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        config.replace(&setup.dc.url, "ldaps://127.0.0.254"),
    )
    .unwrap();
    let run = setup.run(&["sync"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("127.0.0.254"), "{}", run.all());
}

#[test]
fn bad_configuration_exits_2() {
    let setup = setup_with(&[]);
    setup.configure("colour: blue\n");
    let run = setup.run(&["sync"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("colour"), "{}", run.all());

    let missing = setup.run(&["sync", "--config", "/nonexistent/adgang.yaml"]);
    assert_eq!(missing.code, 2, "{}", missing.all());
    assert!(
        missing.stderr.contains("/nonexistent/adgang.yaml"),
        "{}",
        missing.all()
    );
}

#[test]
fn plan_json_lists_actions() {
    let setup = setup_with(&[("anne-hansen", "Anne", "Hansen", -10, 100, BRUGERE)]);
    let run = setup.run(&["plan", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let actions: Vec<&str> = report["plan"]["accounts"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["create", "setInitialPassword", "addToGroup", "enable"]
    );
}

#[test]
fn late_merge_applied_and_recorded() {
    let setup = setup_with(&[("anne-hansen", "Anne", "Hansen", -10, 100, "")]);
    setup.sync_ok();

    // Starts tomorrow: always less than two working days' notice.
    let declaration = format!(
        "  confidentialityDeclaration:\n    received: {}\n    reference: T-1\n",
        day(-1)
    );
    write_user(
        &setup,
        "jens-poulsen",
        "Jens",
        "Poulsen",
        1,
        60,
        &declaration,
    );
    setup.repo.commit("Add Jens late");

    let run = setup.sync_ok();
    assert!(
        run.stdout.contains("merged after the notice deadline"),
        "{}",
        run.all()
    );
    assert!(
        run.stdout.contains("omsorg-nord/jens-poulsen"),
        "{}",
        run.all()
    );
    assert!(
        setup.account("jens.poulsen").is_some(),
        "a merged change is applied"
    );
}
