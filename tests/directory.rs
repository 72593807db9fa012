//! The directory edge against a real Samba AD DC: connect errors, snapshot, every action,
//! passwords, the write guard and paged search.
//!
//! Samba 4.17 behaviour that these tests pin down:
//! - adding a member twice returns 68, removing a missing member returns 53;
//! - a bind with the right password while pwdLastSet is 0 fails with 49 and `data 773`
//!   (must change password), a wrong password with `data 52e`, and any bind to a disabled
//!   account with `data 533`;
//! - adminDescription and adminDisplayName can be written on users.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adgang::directory::{
    Directory, DirectoryError, DirectorySettings, LdapDirectory, Secret, escape_dn_value, same_dn,
};
use adgang::model::{
    Action, AttributeChange, CREDENTIALS_DELIVERED, DeleteReason, LINK_ATTRIBUTE, UserKey,
};
use support::TestDc;

/// A password that meets Samba's default policy (7+ characters, 3 character classes).
const PASSWORD: &str = "Sommer-Kaffe-2026";

/// accountExpires for 2030-01-01 00:00 UTC.
const EXPIRES_2030: i64 = 136_321_920_000_000_000;

fn settings(dc: &TestDc) -> DirectorySettings {
    DirectorySettings {
        url: dc.url.clone(),
        ca_file: dc.ca_file.clone(),
        bind_dn: dc.bind_dn.clone(),
        bind_password: Secret::new(dc.bind_password.clone()),
        managed_base: dc.managed_base.clone(),
        domain_base: dc.base_dn.clone(),
        upn_suffix: "adgang.test".to_owned(),
        connections: DirectorySettings::DEFAULT_CONNECTIONS,
        timeout: Duration::from_secs(20),
    }
}

async fn connect(dc: &TestDc) -> LdapDirectory {
    LdapDirectory::connect(settings(dc))
        .await
        .unwrap_or_else(|error| panic!("connect to {}: {error}", dc.url))
}

fn ou_dn(dc: &TestDc, name: &str) -> String {
    format!("OU={},{}", escape_dn_value(name), dc.managed_base)
}

fn user_dn(ou: &str, name: &str) -> String {
    format!("CN={},{ou}", escape_dn_value(name))
}

fn key(name: &str) -> UserKey {
    UserKey::new("acme", name)
}

fn create(key: &UserKey, dn: &str, username: &str) -> Action {
    let attributes = BTreeMap::from([
        ("givenName".to_owned(), "Åse".to_owned()),
        ("sn".to_owned(), "Ærø-Østergaard".to_owned()),
        ("displayName".to_owned(), "Åse Ærø-Østergaard".to_owned()),
        ("mail".to_owned(), format!("{username}@example.org")),
        ("employeeNumber".to_owned(), "L-1001".to_owned()),
        (
            "userPrincipalName".to_owned(),
            format!("{username}@adgang.test"),
        ),
    ]);
    Action::Create {
        key: key.clone(),
        dn: dn.to_owned(),
        username: username.to_owned(),
        attributes,
        account_expires: EXPIRES_2030,
    }
}

/// Creates the supplier OU `acme` and returns its DN.
async fn acme_ou(dc: &TestDc, directory: &LdapDirectory) -> String {
    let dn = ou_dn(dc, "acme");
    let action = Action::CreateOrganizationalUnit {
        supplier: "acme".to_owned(),
        dn: dn.clone(),
    };
    directory.apply(&action).await.unwrap();
    dn
}

/// Takes a snapshot through the trait that the sync layer uses.
async fn snapshot(directory: &impl Directory) -> adgang::model::DirectorySnapshot {
    directory
        .snapshot(&BTreeSet::new(), &BTreeSet::new())
        .await
        .unwrap()
}

/// Returns the one entry at `dn`, read with the ldapsearch CLI.
fn read(dc: &TestDc, dn: &str, attrs: &[&str]) -> support::Entry {
    let entries = dc.ldapsearch(dn, "(objectClass=*)", attrs);
    let entry = entries.into_iter().find(|entry| same_dn(&entry.dn, dn));
    entry.unwrap_or_else(|| panic!("{dn} not found by ldapsearch"))
}

fn exists(dc: &TestDc, dn: &str) -> bool {
    let entries = dc.ldapsearch(dn, "(objectClass=*)", &["1.1"]);
    entries.iter().any(|entry| same_dn(&entry.dn, dn))
}

/// Makes a self-signed CA certificate that did not issue the DC's certificate.
fn unrelated_ca(folder: &Path) -> std::path::PathBuf {
    let certificate = folder.join("unrelated-ca.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=Unrelated Test CA"])
        .arg("-keyout")
        .arg(folder.join("unrelated-ca.key"))
        .arg("-out")
        .arg(&certificate)
        .output()
        .expect("running openssl");
    assert!(status.status.success(), "openssl failed: {status:?}");
    certificate
}

#[tokio::test]
async fn snapshot_of_empty_base() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let groups = BTreeSet::from([
        "Nexus-Brugere".to_owned(),
        "vpn-brugere".to_owned(),
        "Findes-Ikke".to_owned(),
    ]);
    let candidates = BTreeSet::from([
        "ADMINISTRATOR".to_owned(),
        "nexus-sygepleje".to_owned(),
        "ledig.navn".to_owned(),
        "a*".to_owned(),
    ]);

    directory.check().await.unwrap();
    let snapshot = directory.snapshot(&groups, &candidates).await.unwrap();

    assert!(snapshot.accounts.is_empty(), "{:?}", snapshot.accounts);
    assert!(snapshot.organizational_units.is_empty());
    assert_eq!(snapshot.groups.len(), 2, "{:?}", snapshot.groups);
    let nexus = &snapshot.groups["nexus-brugere"];
    assert!(
        same_dn(nexus, "CN=Nexus-Brugere,OU=Grupper,DC=adgang,DC=test"),
        "{nexus}"
    );
    assert!(snapshot.groups.contains_key("vpn-brugere"));
    assert_eq!(
        snapshot.taken_usernames,
        BTreeSet::from(["administrator".to_owned(), "nexus-sygepleje".to_owned()])
    );
}

#[tokio::test]
async fn organizational_units_with_special_names() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let names = [
        "Jensen, Hansen + Søn",
        "\"Citat\" A/S",
        "back\\slash; <tag> a=b",
        "#1 Hjemmepleje",
        " Åbenrå Øst ",
        "Ærø Ø Å",
    ];

    for (index, name) in names.iter().enumerate() {
        let dn = ou_dn(&dc, name);
        let action = Action::CreateOrganizationalUnit {
            supplier: format!("supplier-{index}"),
            dn: dn.clone(),
        };
        directory.apply(&action).await.unwrap();
        // Creating it again is not an error.
        directory.apply(&action).await.unwrap();

        let username = format!("special{index}");
        let account = user_dn(&dn, &format!("Bruger, {name}"));
        directory
            .apply(&create(&key(&username), &account, &username))
            .await
            .unwrap_or_else(|error| panic!("create in {dn}: {error}"));

        let entry = read(&dc, &dn, &["ou"]);
        assert_eq!(entry.first("ou"), Some(*name), "ou of {dn}");
    }

    let snapshot = snapshot(&directory).await;

    assert_eq!(snapshot.organizational_units.len(), names.len());
    for name in names {
        let expected = ou_dn(&dc, name);
        let found = snapshot
            .organizational_units
            .iter()
            .any(|dn| same_dn(dn, &expected));
        assert!(found, "{expected} in {:?}", snapshot.organizational_units);
    }
    assert_eq!(snapshot.accounts.len(), names.len());
    for (index, name) in names.iter().enumerate() {
        let expected = user_dn(&ou_dn(&dc, name), &format!("Bruger, {name}"));
        let account = snapshot
            .accounts
            .iter()
            .find(|account| account.username == format!("special{index}"))
            .unwrap();
        assert!(
            same_dn(&account.dn, &expected),
            "{} vs {expected}",
            account.dn
        );
    }
}

#[tokio::test]
async fn create_reads_back_in_snapshot() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let ou = acme_ou(&dc, &directory).await;
    let dn = user_dn(&ou, "Åse Ærø-Østergaard");

    directory
        .apply(&create(&key("ase"), &dn, "aseae"))
        .await
        .unwrap();
    let snapshot = snapshot(&directory).await;

    assert_eq!(snapshot.accounts.len(), 1);
    let account = &snapshot.accounts[0];
    assert!(same_dn(&account.dn, &dn), "{}", account.dn);
    assert_eq!(account.username, "aseae");
    assert_eq!(account.link, Some(key("ase")));
    assert_eq!(account.account_expires, Some(EXPIRES_2030));
    assert!(!account.enabled);
    assert!(account.credentials_pending);
    assert!(account.member_of.is_empty());
    assert_eq!(account.attributes["sn"], "Ærø-Østergaard");
    assert_eq!(account.attributes["mail"], "aseae@example.org");
    assert_eq!(account.attributes["userPrincipalName"], "aseae@adgang.test");
    assert_eq!(account.attributes.len(), 6);

    let entry = read(
        &dc,
        &dn,
        &["objectGUID", "userAccountControl", LINK_ATTRIBUTE],
    );
    assert_eq!(entry.first("userAccountControl"), Some("514"));
    assert_eq!(entry.first(LINK_ATTRIBUTE), Some("adgang:v1:acme/ase"));
    // AD resolves the <GUID=...> form of a DN only when the byte order is right.
    let by_guid = dc.ldapsearch(
        &format!("<GUID={}>", account.object_guid),
        "(objectClass=*)",
        &["sAMAccountName"],
    );
    assert_eq!(by_guid.len(), 1, "{}", account.object_guid);
    assert_eq!(by_guid[0].first("sAMAccountName"), Some("aseae"));
}

#[tokio::test]
async fn create_without_principal_name_uses_suffix() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let ou = acme_ou(&dc, &directory).await;
    let dn = user_dn(&ou, "Bo Berg");
    let action = Action::Create {
        key: key("bo"),
        dn: dn.clone(),
        username: "bober".to_owned(),
        attributes: BTreeMap::from([("sn".to_owned(), "Berg".to_owned())]),
        account_expires: EXPIRES_2030,
    };

    directory.apply(&action).await.unwrap();

    let entry = read(&dc, &dn, &["userPrincipalName"]);
    assert_eq!(entry.first("userPrincipalName"), Some("bober@adgang.test"));
}

#[tokio::test]
async fn create_duplicate_username_names_it() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let ou = acme_ou(&dc, &directory).await;
    directory
        .apply(&create(&key("first"), &user_dn(&ou, "First"), "dupe.name"))
        .await
        .unwrap();

    let same_dn_error = directory
        .apply(&create(&key("first"), &user_dn(&ou, "First"), "other.name"))
        .await
        .unwrap_err();
    let same_name_error = directory
        .apply(&create(
            &key("second"),
            &user_dn(&ou, "Second"),
            "dupe.name",
        ))
        .await
        .unwrap_err();

    assert!(
        matches!(same_dn_error, DirectoryError::AlreadyExists { .. }),
        "{same_dn_error}"
    );
    assert!(
        same_dn_error.to_string().contains("CN=First"),
        "{same_dn_error}"
    );
    assert!(
        matches!(same_name_error, DirectoryError::AlreadyExists { .. }),
        "{same_name_error}"
    );
    assert!(
        same_name_error.to_string().contains("dupe.name"),
        "{same_name_error}"
    );

    // Samba rejects a duplicate userPrincipalName with 19, not 68.
    let mut same_principal = create(&key("third"), &user_dn(&ou, "Third"), "third.name");
    if let Action::Create { attributes, .. } = &mut same_principal {
        attributes.insert(
            "userPrincipalName".to_owned(),
            "dupe.name@adgang.test".to_owned(),
        );
    }
    let same_principal_error = directory.apply(&same_principal).await.unwrap_err();
    let DirectoryError::Operation { result, .. } = &same_principal_error else {
        panic!("expected an operation error, got {same_principal_error}");
    };
    assert_eq!(result.rc, 19);
    let message = same_principal_error.to_string();
    assert!(message.contains("dupe.name@adgang.test"), "{message}");
    assert!(message.contains("CN=Third"), "{message}");
}

#[tokio::test]
async fn password_enable_and_bind() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let ou = acme_ou(&dc, &directory).await;
    let dn = user_dn(&ou, "Carl Clausen");
    let principal = "carlc@adgang.test";
    directory
        .apply(&create(&key("carl"), &dn, "carlc"))
        .await
        .unwrap();

    let weak = directory
        .set_password(&dn, &Secret::new("abc"))
        .await
        .unwrap_err();
    assert!(
        matches!(weak, DirectoryError::PasswordRejected { .. }),
        "{weak}"
    );
    assert!(weak.to_string().contains("password policy"), "{weak}");

    directory
        .set_password(&dn, &Secret::new(PASSWORD))
        .await
        .unwrap();
    let entry = read(&dc, &dn, &["pwdLastSet", "userAccountControl"]);
    assert_eq!(entry.first("pwdLastSet"), Some("0"));
    assert_eq!(entry.first("userAccountControl"), Some("514"));
    // A disabled account is rejected with data 533, before the password is looked at.
    let disabled_bind = dc.bind(principal, PASSWORD).unwrap_err();
    assert!(disabled_bind.contains("data 533"), "{disabled_bind}");

    directory
        .apply(&Action::Enable {
            key: key("carl"),
            dn: dn.clone(),
        })
        .await
        .unwrap();
    let entry = read(&dc, &dn, &["userAccountControl"]);
    assert_eq!(entry.first("userAccountControl"), Some("512"));

    // With pwdLastSet = 0 Samba rejects even the right password, with data 773
    // ("must change password"); a wrong password gets data 52e.
    let must_change = dc.bind(principal, PASSWORD).unwrap_err();
    assert!(must_change.contains("data 773"), "{must_change}");
    let wrong = dc.bind(principal, "Forkert-Kodeord-1").unwrap_err();
    assert!(wrong.contains("data 52e"), "{wrong}");

    // The product's own bind reports the AD reason.
    let user_settings = DirectorySettings {
        bind_dn: dn.clone(),
        bind_password: Secret::new(PASSWORD),
        ..settings(&dc)
    };
    let error = LdapDirectory::connect(user_settings).await.err().unwrap();
    assert!(
        matches!(error, DirectoryError::InvalidCredentials { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("must be changed"), "{error}");

    // Once the must-change flag is lifted, the password alone lets the user in.
    dc.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: pwdLastSet\npwdLastSet: -1\n"
    ));
    dc.bind(principal, PASSWORD).unwrap();

    directory.mark_credentials_delivered(&dn).await.unwrap();
    let snapshot = snapshot(&directory).await;
    assert!(!snapshot.accounts[0].credentials_pending);
    assert!(snapshot.accounts[0].enabled);
    let entry = read(&dc, &dn, &["adminDisplayName"]);
    assert_eq!(entry.first("adminDisplayName"), Some(CREDENTIALS_DELIVERED));
}

#[tokio::test]
async fn disable_and_enable_keep_other_flags() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let ou = acme_ou(&dc, &directory).await;
    let dn = user_dn(&ou, "Dorte Dahl");
    directory
        .apply(&create(&key("dorte"), &dn, "dorted"))
        .await
        .unwrap();
    // 0x10000 "password never expires" on a disabled normal account.
    dc.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 66050\n"
    ));

    let enable = Action::Enable {
        key: key("dorte"),
        dn: dn.clone(),
    };
    let disable = Action::Disable {
        key: key("dorte"),
        dn: dn.clone(),
    };

    directory.apply(&enable).await.unwrap();
    assert_eq!(
        read(&dc, &dn, &["userAccountControl"]).first("userAccountControl"),
        Some("66048")
    );
    directory.apply(&enable).await.unwrap();
    assert_eq!(
        read(&dc, &dn, &["userAccountControl"]).first("userAccountControl"),
        Some("66048")
    );
    directory.apply(&disable).await.unwrap();
    assert_eq!(
        read(&dc, &dn, &["userAccountControl"]).first("userAccountControl"),
        Some("66050")
    );
}

#[tokio::test]
async fn expiry_attributes_groups_and_delete() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let ou = acme_ou(&dc, &directory).await;
    let dn = user_dn(&ou, "Erik Eskildsen");
    let erik = key("erik");
    directory.apply(&create(&erik, &dn, "erike")).await.unwrap();
    let groups = BTreeSet::from(["Nexus-Brugere".to_owned(), "VPN-Brugere".to_owned()]);
    let found = directory
        .snapshot(&groups, &BTreeSet::new())
        .await
        .unwrap()
        .groups;
    let nexus = found["nexus-brugere"].clone();
    let vpn = found["vpn-brugere"].clone();

    let new_expiry = EXPIRES_2030 + 864_000_000_000;
    let set_expiry = Action::SetExpiry {
        key: erik.clone(),
        dn: dn.clone(),
        from: Some(EXPIRES_2030),
        to: new_expiry,
    };
    directory.apply(&set_expiry).await.unwrap();

    let update = Action::UpdateAttributes {
        key: erik.clone(),
        dn: dn.clone(),
        changes: vec![
            AttributeChange {
                attribute: "mail".to_owned(),
                from: Some("erike@example.org".to_owned()),
                to: Some("erik.eskildsen@example.com".to_owned()),
            },
            AttributeChange {
                attribute: "employeeNumber".to_owned(),
                from: Some("L-1001".to_owned()),
                to: None,
            },
            AttributeChange {
                attribute: "displayName".to_owned(),
                from: None,
                to: Some("Erik Æble".to_owned()),
            },
        ],
    };
    directory.apply(&update).await.unwrap();
    // Removing an attribute that is already gone is not an error.
    directory.apply(&update).await.unwrap();

    for group_dn in [&nexus, &vpn] {
        let add = Action::AddToGroup {
            key: erik.clone(),
            dn: dn.clone(),
            group_dn: group_dn.clone(),
        };
        directory.apply(&add).await.unwrap();
        directory.apply(&add).await.unwrap();
    }

    let account = snapshot(&directory).await.accounts.remove(0);
    assert_eq!(account.account_expires, Some(new_expiry));
    assert_eq!(account.attributes["mail"], "erik.eskildsen@example.com");
    assert_eq!(account.attributes["displayName"], "Erik Æble");
    assert!(!account.attributes.contains_key("employeeNumber"));
    assert_eq!(account.member_of.len(), 2, "{:?}", account.member_of);
    assert!(account.member_of.iter().any(|group| same_dn(group, &nexus)));

    let remove = Action::RemoveFromGroup {
        key: erik.clone(),
        dn: dn.clone(),
        group_dn: nexus.clone(),
    };
    directory.apply(&remove).await.unwrap();
    directory.apply(&remove).await.unwrap();
    let account = snapshot(&directory).await.accounts.remove(0);
    assert_eq!(account.member_of.len(), 1, "{:?}", account.member_of);
    assert!(account.member_of.iter().any(|group| same_dn(group, &vpn)));

    let delete = Action::Delete {
        key: erik.clone(),
        dn: dn.clone(),
        reason: DeleteReason::Expired,
    };
    directory.apply(&delete).await.unwrap();
    directory.apply(&delete).await.unwrap();
    assert!(!exists(&dc, &dn));
    assert!(snapshot(&directory).await.accounts.is_empty());
}

#[tokio::test]
async fn writes_rejected_without_adgang_link() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let ou = acme_ou(&dc, &directory).await;
    let manual = user_dn(&ou, "Manuel Madsen");
    let foreign = user_dn(&ou, "Fremmed Fisker");
    let other = user_dn(&ou, "Anden Andersen");
    dc.ldapmodify(&format!(
        "dn: {manual}\nchangetype: add\nobjectClass: user\nsAMAccountName: manuelm\n\n\
         dn: {foreign}\nchangetype: add\nobjectClass: user\nsAMAccountName: fremmedf\n\
         {LINK_ATTRIBUTE}: oprettet i hånden\n\n\
         dn: {other}\nchangetype: add\nobjectClass: user\nsAMAccountName: andena\n\
         {LINK_ATTRIBUTE}: adgang:v1:acme/anden\n"
    ));
    let group_dn = "CN=VPN-Brugere,OU=Grupper,DC=adgang,DC=test".to_owned();

    for dn in [&manual, &foreign] {
        let actions = [
            Action::UpdateAttributes {
                key: key("manuel"),
                dn: dn.clone(),
                changes: vec![AttributeChange {
                    attribute: "sn".to_owned(),
                    from: None,
                    to: Some("Ændret".to_owned()),
                }],
            },
            Action::SetExpiry {
                key: key("manuel"),
                dn: dn.clone(),
                from: None,
                to: 1,
            },
            Action::Enable {
                key: key("manuel"),
                dn: dn.clone(),
            },
            Action::AddToGroup {
                key: key("manuel"),
                dn: dn.clone(),
                group_dn: group_dn.clone(),
            },
            Action::Delete {
                key: key("manuel"),
                dn: dn.clone(),
                reason: DeleteReason::FileRemoved,
            },
        ];
        for action in &actions {
            let error = directory.apply(action).await.unwrap_err();
            assert!(
                matches!(error, DirectoryError::NotAdgangObject { .. }),
                "{error}"
            );
            assert!(error.to_string().contains("not an Adgang link"), "{error}");
        }
        let error = directory
            .set_password(dn, &Secret::new(PASSWORD))
            .await
            .unwrap_err();
        assert!(
            matches!(error, DirectoryError::NotAdgangObject { .. }),
            "{error}"
        );
        let error = directory.mark_credentials_delivered(dn).await.unwrap_err();
        assert!(
            matches!(error, DirectoryError::NotAdgangObject { .. }),
            "{error}"
        );

        let entry = read(&dc, dn, &["sn", "memberOf", "userAccountControl"]);
        assert_eq!(entry.first("sn"), None, "{dn}");
        assert!(entry.get("memberOf").is_empty(), "{dn}");
    }

    // An Adgang object linked to another user is rejected too.
    let delete_other = Action::Delete {
        key: key("manuel"),
        dn: other.clone(),
        reason: DeleteReason::FileRemoved,
    };
    let error = directory.apply(&delete_other).await.unwrap_err();
    assert!(
        matches!(error, DirectoryError::LinkMismatch { .. }),
        "{error}"
    );
    assert!(exists(&dc, &other));

    // The snapshot still reports the accounts, without a link.
    let snapshot = snapshot(&directory).await;
    assert_eq!(snapshot.accounts.len(), 3);
    let unlinked = snapshot
        .accounts
        .iter()
        .filter(|account| account.link.is_none())
        .count();
    assert_eq!(unlinked, 2);
}

#[tokio::test]
async fn writes_rejected_outside_managed_base() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let administrator = dc.bind_dn.clone();
    let outside_ou = "OU=Andet,DC=adgang,DC=test".to_owned();

    let actions = [
        Action::Delete {
            key: key("administrator"),
            dn: administrator.clone(),
            reason: DeleteReason::FileRemoved,
        },
        Action::Disable {
            key: key("administrator"),
            dn: administrator.clone(),
        },
        Action::CreateOrganizationalUnit {
            supplier: "andet".to_owned(),
            dn: outside_ou.clone(),
        },
        Action::Create {
            key: key("ude"),
            dn: format!("CN=Ude,{}", "OU=Grupper,DC=adgang,DC=test"),
            username: "ude".to_owned(),
            attributes: BTreeMap::new(),
            account_expires: EXPIRES_2030,
        },
        // The managed base itself is not below itself.
        Action::Delete {
            key: key("base"),
            dn: dc.managed_base.clone(),
            reason: DeleteReason::FileRemoved,
        },
        // A name that only ends like the managed base.
        Action::Delete {
            key: key("lookalike"),
            dn: "CN=x,OU=IkkeLeverandører,DC=adgang,DC=test".to_owned(),
            reason: DeleteReason::FileRemoved,
        },
    ];

    for action in &actions {
        let error = directory.apply(action).await.unwrap_err();
        assert!(
            matches!(error, DirectoryError::OutsideManagedBase { .. }),
            "{error}"
        );
        assert!(error.to_string().contains(&dc.managed_base), "{error}");
    }
    let error = directory
        .set_password(&administrator, &Secret::new(PASSWORD))
        .await
        .unwrap_err();
    assert!(
        matches!(error, DirectoryError::OutsideManagedBase { .. }),
        "{error}"
    );

    assert!(exists(&dc, &administrator));
    assert!(exists(&dc, &dc.managed_base));
    assert!(!exists(&dc, &outside_ou));
    let entry = read(&dc, &administrator, &["userAccountControl"]);
    assert_eq!(entry.first("userAccountControl"), Some("512"));
}

#[tokio::test]
async fn set_initial_password_action_is_rejected() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let action = Action::SetInitialPassword {
        key: key("x"),
        dn: user_dn(&dc.managed_base, "X"),
        username: "x".to_owned(),
        display_name: "X".to_owned(),
    };

    let error = directory.apply(&action).await.unwrap_err();

    assert!(
        matches!(error, DirectoryError::UnsupportedAction { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn connect_with_unrelated_ca_fails_tls() {
    let dc = TestDc::start();
    let folder = tempfile::tempdir().unwrap();
    let ca_file = unrelated_ca(folder.path());
    let wrong_ca = DirectorySettings {
        ca_file: ca_file.clone(),
        ..settings(&dc)
    };

    let error = LdapDirectory::connect(wrong_ca).await.err().unwrap();

    assert!(matches!(error, DirectoryError::Tls { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&ca_file.display().to_string()),
        "{message}"
    );
    assert!(message.contains(&dc.url), "{message}");
}

#[tokio::test]
async fn connect_with_wrong_password_names_bind_dn() {
    let dc = TestDc::start();
    let wrong_password = "Forkert-Admin-Kodeord-9";
    let settings = DirectorySettings {
        bind_password: Secret::new(wrong_password),
        ..settings(&dc)
    };

    let error = LdapDirectory::connect(settings).await.err().unwrap();

    assert!(
        matches!(error, DirectoryError::InvalidCredentials { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&dc.bind_dn), "{message}");
    assert!(message.contains("invalid DN or password"), "{message}");
    assert!(!message.contains(wrong_password), "{message}");
    assert!(!format!("{error:?}").contains(wrong_password));
}

#[tokio::test]
async fn connect_to_closed_port_is_unreachable() {
    let folder = tempfile::tempdir().unwrap();
    let ca_file = unrelated_ca(folder.path());
    let settings = DirectorySettings {
        url: "ldaps://127.0.0.254:636".to_owned(),
        ca_file,
        bind_dn: "CN=Administrator,CN=Users,DC=adgang,DC=test".to_owned(),
        bind_password: Secret::new("unused"),
        managed_base: "OU=Leverandører,DC=adgang,DC=test".to_owned(),
        domain_base: "DC=adgang,DC=test".to_owned(),
        upn_suffix: "adgang.test".to_owned(),
        connections: 1,
        timeout: Duration::from_secs(5),
    };

    let error = LdapDirectory::connect(settings).await.err().unwrap();

    assert!(
        matches!(error, DirectoryError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("ldaps://127.0.0.254:636"),
        "{error}"
    );
}

#[tokio::test]
async fn connect_to_silent_server_times_out() {
    // A TCP server that accepts the connection and never sends a byte of the TLS handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (_socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let folder = tempfile::tempdir().unwrap();
    let settings = DirectorySettings {
        url: format!("ldaps://127.0.0.1:{port}"),
        ca_file: unrelated_ca(folder.path()),
        bind_dn: "CN=Administrator,CN=Users,DC=adgang,DC=test".to_owned(),
        bind_password: Secret::new("unused"),
        managed_base: "OU=Leverandører,DC=adgang,DC=test".to_owned(),
        domain_base: "DC=adgang,DC=test".to_owned(),
        upn_suffix: "adgang.test".to_owned(),
        connections: 1,
        timeout: Duration::from_secs(1),
    };

    let error = LdapDirectory::connect(settings).await.err().unwrap();
    server.abort();

    assert!(matches!(error, DirectoryError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("timed out after 1 s"), "{error}");
}

#[tokio::test]
async fn connections_recover_after_restart() {
    let mut dc = TestDc::start();
    let directory = connect(&dc).await;
    acme_ou(&dc, &directory).await;

    dc.restart();
    // The pooled connection may still look open right after the restart.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let snapshot = snapshot(&directory).await;
    assert_eq!(snapshot.organizational_units.len(), 1);
    directory.check().await.unwrap();
}

#[tokio::test]
async fn concurrent_creates_use_the_pool() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let ou = acme_ou(&dc, &directory).await;
    let actions: Vec<Action> = (0..24)
        .map(|index| {
            let name = format!("samtidig{index:02}");
            create(&key(&name), &user_dn(&ou, &name), &name)
        })
        .collect();

    // Spawned tasks prove that the futures of the trait are Send.
    let directory = Arc::new(directory);
    let tasks: Vec<_> = actions
        .into_iter()
        .map(|action| {
            let directory = Arc::clone(&directory);
            tokio::spawn(async move { Directory::apply(&*directory, &action).await })
        })
        .collect();

    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(snapshot(&*directory).await.accounts.len(), 24);
}

#[tokio::test]
async fn snapshot_pages_past_one_thousand() {
    let dc = TestDc::start();
    let directory = connect(&dc).await;
    let ou = acme_ou(&dc, &directory).await;
    let count = 1_100;
    let mut ldif = String::new();
    for index in 0..count {
        let name = format!("masse{index:04}");
        ldif.push_str(&format!(
            "dn: CN={name},{ou}\nchangetype: add\nobjectClass: user\nsAMAccountName: {name}\n\
             {LINK_ATTRIBUTE}: adgang:v1:acme/{name}\n\n"
        ));
    }
    dc.ldapmodify(&ldif);

    let candidates: BTreeSet<String> = (0..250).map(|index| format!("MASSE{index:04}")).collect();
    // Samba 4.17 returns all 1,100 entries even without paging, so the debug events show
    // whether the search really went page by page.
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(log.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let snapshot = directory
        .snapshot(&BTreeSet::new(), &candidates)
        .await
        .unwrap();
    drop(guard);

    assert_eq!(snapshot.accounts.len(), count);
    let linked = snapshot
        .accounts
        .iter()
        .filter(|account| account.link.is_some())
        .count();
    assert_eq!(linked, count);
    let guids: BTreeSet<&str> = snapshot
        .accounts
        .iter()
        .map(|a| a.object_guid.as_str())
        .collect();
    assert_eq!(guids.len(), count);
    assert_eq!(snapshot.taken_usernames.len(), 250);
    let pages: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|line| line.contains("read search page") && line.contains("objectClass=computer"))
        .collect();
    assert_eq!(pages.len(), 2, "{pages:#?}");
    assert!(pages[0].contains("entries=1000"), "{}", pages[0]);
    assert!(pages[1].contains("entries=100"), "{}", pages[1]);
}

/// Log output collected in memory.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
