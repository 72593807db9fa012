//! Reading: the snapshot of the managed base, group and username look-ups, and readiness.

use std::collections::{BTreeMap, BTreeSet};

use ldap3::adapters::EntriesOnly;
use ldap3::controls::{Control, ControlType, PagedResults};
use ldap3::{Scope, SearchEntry};

use super::{DirectoryError, LdapDirectory, escape_filter_value};
use crate::model::{
    Account, CREDENTIALS_ATTRIBUTE, CREDENTIALS_PENDING, DirectorySnapshot, LINK_ATTRIBUTE,
    MANAGED_ATTRIBUTES, UserKey,
};

/// Entries per page of a paged search; AD's default MaxPageSize is 1000. Samba 4.17 does not
/// cap searches without paging at MaxPageSize, but Windows AD does.
const PAGE_SIZE: i32 = 1000;

/// Names per `(|...)` filter when looking up groups and usernames.
const NAMES_PER_FILTER: usize = 100;

/// LDAP result code for a base DN that does not exist.
const NO_SUCH_OBJECT: u32 = 32;

/// userAccountControl flag of a disabled account.
pub(crate) const ACCOUNT_DISABLE: u32 = 0x2;

const USER_FILTER: &str = "(&(objectClass=user)(!(objectClass=computer)))";

impl LdapDirectory {
    /// Reads what the plan needs; see [`super::Directory::snapshot`].
    ///
    /// The four searches run concurrently on separate pooled connections. Accounts are
    /// converted entry by entry, so memory grows with the accounts, not with the raw replies.
    pub async fn snapshot(
        &self,
        group_names: &BTreeSet<String>,
        username_candidates: &BTreeSet<String>,
    ) -> Result<DirectorySnapshot, DirectoryError> {
        let (accounts, groups, taken_usernames, organizational_units) = tokio::try_join!(
            self.read_accounts(),
            self.read_groups(group_names),
            self.taken_usernames(username_candidates),
            self.read_organizational_units(),
        )?;

        tracing::debug!(
            accounts = accounts.len(),
            groups = groups.len(),
            taken_usernames = taken_usernames.len(),
            organizational_units = organizational_units.len(),
            "read directory snapshot"
        );
        Ok(DirectorySnapshot {
            accounts,
            groups,
            taken_usernames,
            organizational_units,
        })
    }

    /// Reads the rootDSE and the managed base; fails when either cannot be read.
    pub async fn check(&self) -> Result<(), DirectoryError> {
        let mut found = false;
        self.search(
            "",
            Scope::Base,
            "(objectClass=*)",
            &["defaultNamingContext"],
            |_| {
                found = true;
                Ok(())
            },
        )
        .await?;
        if !found {
            return Err(DirectoryError::NotFound {
                dn: "the rootDSE".to_owned(),
            });
        }

        let result = self
            .search(
                &self.managed_base,
                Scope::Base,
                "(objectClass=*)",
                &["1.1"],
                |_| Ok(()),
            )
            .await;
        match result {
            Err(DirectoryError::NotFound { dn }) => Err(DirectoryError::ManagedBaseMissing { dn }),
            other => other,
        }
    }

    async fn read_accounts(&self) -> Result<Vec<Account>, DirectoryError> {
        let mut attributes = vec![
            "sAMAccountName",
            "objectGUID",
            "userAccountControl",
            "accountExpires",
            "memberOf",
            LINK_ATTRIBUTE,
            CREDENTIALS_ATTRIBUTE,
        ];
        attributes.extend(MANAGED_ATTRIBUTES);

        let mut accounts = Vec::new();
        self.search(
            &self.managed_base,
            Scope::Subtree,
            USER_FILTER,
            &attributes,
            |entry| {
                accounts.push(account_from_entry(entry)?);
                Ok(())
            },
        )
        .await?;
        Ok(accounts)
    }

    async fn read_groups(
        &self,
        group_names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>, DirectoryError> {
        self.find_by_account_name(group_names, "(objectClass=group)")
            .await
    }

    /// Returns which of `candidates` are in use; see [`super::Directory::taken_usernames`].
    pub async fn taken_usernames(
        &self,
        candidates: &BTreeSet<String>,
    ) -> Result<BTreeSet<String>, DirectoryError> {
        let found = self
            .find_by_account_name(candidates, "(objectClass=*)")
            .await?;
        Ok(found.into_keys().collect())
    }

    /// Looks up objects matching `class_filter` anywhere under the domain base by
    /// sAMAccountName, ignoring case. Returns lower-case name to DN.
    async fn find_by_account_name(
        &self,
        names: &BTreeSet<String>,
        class_filter: &str,
    ) -> Result<BTreeMap<String, String>, DirectoryError> {
        let requested: BTreeSet<String> = names.iter().map(|name| name.to_lowercase()).collect();
        let mut found = BTreeMap::new();

        for names_filter in name_filters(&requested) {
            let filter = format!("(&{class_filter}{names_filter})");
            let attributes = ["sAMAccountName"];
            self.search(
                &self.domain_base,
                Scope::Subtree,
                &filter,
                &attributes,
                |entry| {
                    if let Some(name) = first_value(&entry, "sAMAccountName") {
                        let name = name.to_lowercase();
                        if requested.contains(&name) {
                            found.insert(name, entry.dn);
                        }
                    }
                    Ok(())
                },
            )
            .await?;
        }
        Ok(found)
    }

    async fn read_organizational_units(&self) -> Result<BTreeSet<String>, DirectoryError> {
        let mut units = BTreeSet::new();
        let filter = "(objectClass=organizationalUnit)";
        self.search(
            &self.managed_base,
            Scope::OneLevel,
            filter,
            &["1.1"],
            |entry| {
                units.insert(entry.dn);
                Ok(())
            },
        )
        .await?;
        Ok(units)
    }

    /// Runs a paged search (RFC 2696) and hands each entry to `on_entry` as it arrives.
    ///
    /// Referrals to other naming contexts are skipped. A base that does not exist is
    /// [`DirectoryError::NotFound`].
    pub(crate) async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attributes: &[&str],
        mut on_entry: impl FnMut(SearchEntry) -> Result<(), DirectoryError>,
    ) -> Result<(), DirectoryError> {
        let operation = format!("search under {base:?} for {filter}");
        let mut ldap = self.pool.get().await?;
        let mut cookie = Vec::new();

        for page in 1.. {
            let control = PagedResults {
                size: PAGE_SIZE,
                cookie: std::mem::take(&mut cookie),
            };
            let mut stream = ldap
                .with_timeout(self.pool.timeout)
                .with_controls(control)
                .streaming_search_with(EntriesOnly::new(), base, scope, filter, attributes.to_vec())
                .await
                .map_err(|source| self.pool.error(&operation, source))?;

            let mut entries = 0_usize;
            loop {
                let entry = match stream.next().await {
                    Ok(Some(entry)) => entry,
                    Ok(None) => break,
                    Err(source) => {
                        ldap.discard();
                        return Err(self.pool.error(&operation, source));
                    }
                };
                entries += 1;
                if let Err(error) = on_entry(SearchEntry::construct(entry)) {
                    // The rest of the page is still arriving on this connection.
                    ldap.discard();
                    return Err(error);
                }
            }

            let result = stream.finish().await;
            match result.rc {
                0 => {}
                NO_SUCH_OBJECT => {
                    return Err(DirectoryError::NotFound {
                        dn: base.to_owned(),
                    });
                }
                _ => {
                    return Err(DirectoryError::Operation {
                        operation,
                        dn: base.to_owned(),
                        result: Box::new(result),
                    });
                }
            }
            tracing::debug!(dn = base, filter, page, entries, "read search page");

            cookie = result
                .ctrls
                .iter()
                .find_map(|control| match control {
                    Control(Some(ControlType::PagedResults), raw) => {
                        Some(raw.parse::<PagedResults>().cookie)
                    }
                    _ => None,
                })
                .unwrap_or_default();
            if cookie.is_empty() {
                break;
            }
        }
        Ok(())
    }
}

/// Builds `(|(sAMAccountName=a)(sAMAccountName=b)...)` filters of at most
/// [`NAMES_PER_FILTER`] names each.
fn name_filters(names: &BTreeSet<String>) -> Vec<String> {
    let names: Vec<&String> = names.iter().collect();
    names
        .chunks(NAMES_PER_FILTER)
        .map(|chunk| {
            let terms: String = chunk
                .iter()
                .map(|name| format!("(sAMAccountName={})", escape_filter_value(name)))
                .collect();
            format!("(|{terms})")
        })
        .collect()
}

/// Converts one user entry into an [`Account`].
fn account_from_entry(mut entry: SearchEntry) -> Result<Account, DirectoryError> {
    let dn = entry.dn.clone();
    let invalid = |attribute: &'static str, value: &str| DirectoryError::InvalidAttribute {
        dn: dn.clone(),
        attribute,
        value: value.to_owned(),
    };

    let username = first_value(&entry, "sAMAccountName")
        .ok_or_else(|| invalid("sAMAccountName", ""))?
        .to_owned();

    let guid_bytes = binary_value(&entry, "objectGUID").ok_or_else(|| invalid("objectGUID", ""))?;
    let object_guid = format_guid(&guid_bytes)
        .ok_or_else(|| invalid("objectGUID", &format!("{guid_bytes:02x?}")))?;

    let control = first_value(&entry, "userAccountControl").unwrap_or("0");
    let user_account_control = parse_user_account_control(control)
        .ok_or_else(|| invalid("userAccountControl", control))?;

    let account_expires = match first_value(&entry, "accountExpires") {
        None => None,
        Some(value) => {
            let filetime: i64 = value
                .parse()
                .map_err(|_| invalid("accountExpires", value))?;
            (filetime != 0 && filetime != i64::MAX).then_some(filetime)
        }
    };

    let link = first_value(&entry, LINK_ATTRIBUTE).and_then(UserKey::from_link);
    let credentials_pending =
        first_value(&entry, CREDENTIALS_ATTRIBUTE) == Some(CREDENTIALS_PENDING);

    let mut attributes = BTreeMap::new();
    for name in MANAGED_ATTRIBUTES {
        if let Some(value) = first_value(&entry, name) {
            attributes.insert(name.to_owned(), value.to_owned());
        }
    }

    let member_of = take_values(&mut entry, "memberOf").into_iter().collect();

    Ok(Account {
        dn: entry.dn,
        object_guid,
        username,
        link,
        attributes,
        account_expires,
        enabled: user_account_control & ACCOUNT_DISABLE == 0,
        credentials_pending,
        member_of,
    })
}

/// Parses userAccountControl, which AD returns as a signed 32-bit decimal.
pub(crate) fn parse_user_account_control(value: &str) -> Option<u32> {
    let value: i64 = value.trim().parse().ok()?;
    match value {
        0..=0xFFFF_FFFF => Some(value as u32),
        -0x8000_0000..0 => Some(value as i32 as u32),
        _ => None,
    }
}

/// Formats a 16-byte objectGUID in the usual text form: the first three fields are stored
/// little-endian, the last two in byte order.
fn format_guid(bytes: &[u8]) -> Option<String> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-\
         {:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

/// Returns the first text value of `name`, matching the attribute name without regard to case.
pub(crate) fn first_value<'e>(entry: &'e SearchEntry, name: &str) -> Option<&'e str> {
    entry
        .attrs
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.first())
        .map(String::as_str)
}

/// Removes and returns the text values of `name`.
fn take_values(entry: &mut SearchEntry, name: &str) -> Vec<String> {
    let key = entry
        .attrs
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned();
    key.and_then(|key| entry.attrs.remove(&key))
        .unwrap_or_default()
}

/// Returns the first value of a binary attribute, from either map of the entry.
///
/// ldap3 puts a binary value that happens to be valid UTF-8 among the text attributes.
fn binary_value(entry: &SearchEntry, name: &str) -> Option<Vec<u8>> {
    let binary = entry
        .bin_attrs
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.first())
        .cloned();
    binary.or_else(|| first_value(entry, name).map(|text| text.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn format_guid_swaps_first_three_fields() {
        let bytes = [
            0x25, 0x4a, 0xa6, 0x2e, 0xc6, 0xf7, 0x56, 0x40, 0xbc, 0xc7, 0xe5, 0x17, 0x81, 0xdf,
            0x0b, 0x5a,
        ];

        assert_eq!(
            format_guid(&bytes).unwrap(),
            "2ea64a25-f7c6-4056-bcc7-e51781df0b5a"
        );
        assert_eq!(format_guid(&bytes[..15]), None);
    }

    #[test]
    fn parse_user_account_control_table() {
        let cases = [
            ("512", Some(512)),
            ("514", Some(514)),
            ("66048", Some(66048)),
            ("-2147483136", Some(0x8000_0200)),
            ("4294967296", None),
            ("x", None),
        ];

        for (value, expected) in cases {
            assert_eq!(parse_user_account_control(value), expected, "{value}");
        }
    }

    #[test]
    fn name_filters_batch_and_escape() {
        let names: BTreeSet<String> = (0..250).map(|i| format!("user{i:03}")).collect();
        let filters = name_filters(&names);
        let special = name_filters(&BTreeSet::from(["a*(b)\\".to_owned()]));

        assert_eq!(filters.len(), 3);
        assert_eq!(filters[0].matches("(sAMAccountName=").count(), 100);
        assert_eq!(filters[2].matches("(sAMAccountName=").count(), 50);
        assert_eq!(
            special,
            vec!["(|(sAMAccountName=a\\2a\\28b\\29\\5c))".to_owned()]
        );
    }

    #[test]
    fn account_from_entry_reads_link_expiry_and_state() {
        let text = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        let entry = SearchEntry {
            dn: "CN=Åse Ærø,OU=acme,OU=Leverandører,DC=adgang,DC=test".to_owned(),
            attrs: HashMap::from([
                ("sAMAccountName".to_owned(), text(&["aseae"])),
                ("userAccountControl".to_owned(), text(&["514"])),
                ("accountExpires".to_owned(), text(&["133500000000000000"])),
                (
                    "adminDescription".to_owned(),
                    text(&["adgang:v1:acme/ase-aero"]),
                ),
                (
                    "adminDisplayName".to_owned(),
                    text(&["adgang:credentials-pending"]),
                ),
                ("givenName".to_owned(), text(&["Åse"])),
                (
                    "memberOf".to_owned(),
                    text(&["CN=VPN-Brugere,OU=Grupper,DC=adgang,DC=test"]),
                ),
            ]),
            bin_attrs: HashMap::from([("objectGUID".to_owned(), vec![vec![0xab; 16]])]),
        };

        let account = account_from_entry(entry).unwrap();

        assert_eq!(account.username, "aseae");
        assert_eq!(account.object_guid, "abababab-abab-abab-abab-abababababab");
        assert_eq!(account.link, Some(UserKey::new("acme", "ase-aero")));
        assert_eq!(account.account_expires, Some(133500000000000000));
        assert!(!account.enabled);
        assert!(account.credentials_pending);
        assert_eq!(
            account.attributes.get("givenName").map(String::as_str),
            Some("Åse")
        );
        assert_eq!(account.member_of.len(), 1);
    }

    #[test]
    fn account_from_entry_zero_and_max_never_expire() {
        for never in ["0", "9223372036854775807"] {
            let entry = SearchEntry {
                dn: "CN=x,DC=test".to_owned(),
                attrs: HashMap::from([
                    ("sAMAccountName".to_owned(), vec!["x".to_owned()]),
                    ("accountExpires".to_owned(), vec![never.to_owned()]),
                    ("objectGUID".to_owned(), vec!["0123456789abcdef".to_owned()]),
                ]),
                bin_attrs: HashMap::new(),
            };

            let account = account_from_entry(entry).unwrap();

            assert_eq!(account.account_expires, None, "{never}");
            assert_eq!(account.link, None);
            assert!(account.enabled);
        }
    }
}
