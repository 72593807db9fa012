//! Checks of the Samba AD test harness itself: fixture, isolation, stop and restart, binds.

mod support;

use support::dc::parse_ldif;
use support::{Entry, TestDc};

const FIXTURE_GROUPS: [&str; 4] = [
    "Nexus-Brugere",
    "Nexus-Hjemmepleje",
    "Nexus-Sygepleje",
    "VPN-Brugere",
];

fn group_names(dc: &TestDc) -> Vec<String> {
    let groups = dc.ldapsearch(
        "OU=Grupper,DC=adgang,DC=test",
        "(objectClass=group)",
        &["sAMAccountName"],
    );
    let mut names: Vec<String> = groups
        .iter()
        .filter_map(|group| group.first("sAMAccountName"))
        .map(String::from)
        .collect();
    names.sort();
    names
}

fn assert_fixture(dc: &TestDc) {
    assert_eq!(
        group_names(dc),
        FIXTURE_GROUPS,
        "fixture groups on {}",
        dc.url
    );

    let groups = dc.ldapsearch("OU=Grupper,DC=adgang,DC=test", "(objectClass=group)", &[]);
    for group in &groups {
        let cn = group.first("cn").expect("a group has a cn");
        assert_eq!(
            group.first("sAMAccountName"),
            Some(cn),
            "sAMAccountName of {}",
            group.dn
        );
        // -2147483646 (0x80000002) is a global security group.
        assert_eq!(
            group.first("groupType"),
            Some("-2147483646"),
            "groupType of {}",
            group.dn
        );
    }

    let managed = dc.ldapsearch(&dc.managed_base, "(objectClass=*)", &["ou"]);
    let dns: Vec<&str> = managed.iter().map(|entry| entry.dn.as_str()).collect();
    assert_eq!(
        dns,
        [dc.managed_base.as_str()],
        "the managed base holds nothing but itself"
    );
    assert_eq!(managed[0].first("ou"), Some("Leverandører"));
}

fn add_ou_ldif(parent: &str, name: &str) -> String {
    format!("dn: OU={name},{parent}\nchangetype: add\nobjectClass: organizationalUnit\n")
}

#[test]
fn two_dcs_run_side_by_side() {
    let first = TestDc::start();
    let second = TestDc::start();
    assert_ne!(first.address, second.address);
    assert_ne!(first.dir, second.dir);
    assert_fixture(&first);
    assert_fixture(&second);

    // Each DC has its own copy of the data.
    first.ldapmodify(&add_ou_ldif(&first.managed_base, "Only-First"));
    let probe = "OU=Only-First,OU=Leverandører,DC=adgang,DC=test";
    assert_eq!(first.ldapsearch(probe, "(objectClass=*)", &["ou"]).len(), 1);
    assert!(
        second
            .ldapsearch(probe, "(objectClass=*)", &["ou"])
            .is_empty()
    );
}

#[test]
fn stop_and_restart_keep_data() {
    let mut dc = TestDc::start();
    let other = TestDc::start();
    dc.ldapmodify(&add_ou_ldif(&dc.managed_base, "Survives-Restart"));

    dc.stop();
    let down = dc.bind(&dc.bind_dn, &dc.bind_password);
    assert!(down.is_err(), "a bind to a stopped DC fails");
    other
        .bind(&other.bind_dn, &other.bind_password)
        .expect("the other DC still accepts binds");

    dc.restart();
    dc.bind(&dc.bind_dn, &dc.bind_password)
        .expect("a bind after restart succeeds");
    let probe = "OU=Survives-Restart,OU=Leverandører,DC=adgang,DC=test";
    assert_eq!(dc.ldapsearch(probe, "(objectClass=*)", &["ou"]).len(), 1);
    assert_eq!(group_names(&dc), FIXTURE_GROUPS);
}

#[test]
fn bind_with_wrong_password_fails() {
    let dc = TestDc::start();
    dc.bind(&dc.bind_dn, &dc.bind_password)
        .expect("Administrator binds with its password");

    let error = dc
        .bind(&dc.bind_dn, "Wrong-Password-1")
        .expect_err("a wrong password is rejected");
    assert!(
        error.contains("Invalid credentials (49)"),
        "unexpected error: {error}"
    );
}

#[test]
fn ldapmodify_errors_are_returned() {
    let dc = TestDc::start();
    let duplicate = add_ou_ldif("DC=adgang,DC=test", "Grupper");
    let error = dc
        .try_ldapmodify(&duplicate)
        .expect_err("adding an existing OU fails");
    assert!(
        error.contains("Already exists (68)"),
        "unexpected error: {error}"
    );
}

#[test]
fn ldapsearch_of_missing_base_is_empty() {
    let dc = TestDc::start();
    let entries = dc.ldapsearch("OU=Missing,DC=adgang,DC=test", "(objectClass=*)", &[]);
    assert!(entries.is_empty());
}

#[test]
fn env_matches_script_output() {
    let dc = TestDc::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/samba-dc");
    let printed = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"eval "$("$0" env "$1")" && env | grep '^ADGANG_' | sort"#)
        .arg(script)
        .arg(&dc.dir)
        // Only what the script prints may reach the comparison, not ADGANG_* variables that
        // the caller set, such as ADGANG_SMTP_VENV.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("running scripts/samba-dc env");
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );

    let mut expected: Vec<String> = dc
        .env()
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    expected.sort();
    let printed = String::from_utf8(printed.stdout).expect("UTF-8 output");
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn parse_ldif_decodes_base64_and_folding() {
    let text = "dn:: T1U9TGV2ZXJhbmTDuHJlcixEQz1hZGdhbmcsREM9dGVzdA==\n\
                ou:: TGV2ZXJhbmTDuHJlcg==\n\
                objectClass: top\n\
                objectClass: organizationalUnit\n\
                description: folded\n  line\n\
                objectGUID:: /w==\n\
                \n\
                # a comment\n\
                dn: CN=Nexus-Brugere,OU=Grupper,DC=adgang,DC=test\n\
                sAMAccountName: Nexus-Brugere\n";
    let entries: Vec<Entry> = parse_ldif(text);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].dn, "OU=Leverandører,DC=adgang,DC=test");
    assert_eq!(entries[0].get("OU"), ["Leverandører"]);
    assert_eq!(entries[0].get("objectClass"), ["top", "organizationalUnit"]);
    assert_eq!(entries[0].first("description"), Some("folded line"));
    // Binary values stay base64.
    assert_eq!(entries[0].first("objectGUID"), Some("/w=="));
    assert_eq!(
        entries[1].dn,
        "CN=Nexus-Brugere,OU=Grupper,DC=adgang,DC=test"
    );
    assert_eq!(entries[1].first("samaccountname"), Some("Nexus-Brugere"));
}
