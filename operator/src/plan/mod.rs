//! The plan: what must change in AD so that it matches the desired state.
//!
//! [`plan`] is a pure function of the desired state, a snapshot of the managed base, the
//! current instant and the settings. It returns the actions per account, in the order they
//! must run, and the findings that need a person's attention. No I/O happens here, so every
//! rule is table-tested in this file, and `adgang plan` shows exactly what `adgang sync`
//! would do.
//!
//! The order of actions for a new account makes every step safe to interrupt: the account is
//! created disabled with its link and a "credentials pending" mark, then gets its password,
//! then its groups, and is enabled last. A run killed anywhere leaves an account that the
//! next run finds by its link and completes; none is left enabled without delivered
//! credentials.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::desired::{DesiredState, DesiredUser};
use crate::directory::{escape_dn_value, same_dn};
use crate::expiry;
use crate::model::{Account, Action, AttributeChange, DeleteReason, DirectorySnapshot, UserKey};
use crate::resources::SupplierUserSpec;
use crate::username;

/// Settings that shape the plan.
#[derive(Clone, Debug)]
pub struct Settings {
    /// DN of the managed base OU; each supplier has an OU directly below it.
    pub managed_base: String,
    /// Suffix of userPrincipalName (`username@suffix`).
    pub upn_suffix: String,
    /// Time zone in which calendar dates are read.
    pub time_zone: Tz,
    /// Days after the last day of access before the account is deleted.
    pub grace_days: u32,
    /// Mass-deletion guard.
    pub guard: DeletionGuard,
}

/// Stops a supplier's reconcile when it would delete too many of its accounts at once.
#[derive(Clone, Debug)]
pub struct DeletionGuard {
    /// Largest share of a supplier's accounts that one reconcile may delete (0.0–1.0).
    pub max_share: f64,
    /// Deletions up to this count are always allowed, whatever their share.
    pub min_count: usize,
    /// Suppliers for which an operator has lifted the guard for this run.
    pub overridden: BTreeSet<String>,
}

impl Default for DeletionGuard {
    fn default() -> Self {
        Self {
            max_share: 0.25,
            min_count: 3,
            overridden: BTreeSet::new(),
        }
    }
}

/// The actions for one account, in the order they must run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccountPlan {
    pub key: UserKey,
    /// The account's username, existing or planned.
    pub username: String,
    pub actions: Vec<Action>,
    /// True when an attribute or group change puts back a change made by hand in AD.
    pub drift: bool,
}

/// Something the plan leaves alone but a person should know of.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "finding", rename_all = "camelCase")]
pub enum Finding {
    /// An object under the managed base that Adgang did not create; never touched.
    UnmanagedObject { dn: String, username: String },
    /// Membership of a group that no supplier allows; never touched.
    UnmanagedGroupMembership {
        key: UserKey,
        dn: String,
        group_dn: String,
    },
    /// A file is invalid, so its account is left as it is.
    UserFrozen { key: UserKey, exists_in_ad: bool },
    /// A supplier's `supplier.yaml` is missing or invalid, so all its accounts are left as they are.
    SupplierFrozen { supplier: String },
    /// The supplier is suspended, so its accounts are left as they are.
    SupplierSuspended { supplier: String },
    /// A file requests a username other than the one the account has.
    UsernameChangeRejected {
        key: UserKey,
        source: String,
        requested: String,
        existing: String,
    },
    /// The requested username belongs to another account in the domain.
    UsernameTaken {
        key: UserKey,
        source: String,
        requested: String,
    },
    /// A group in the file does not exist in AD.
    GroupNotFound {
        key: UserKey,
        source: String,
        group: String,
    },
    /// More than one object carries the same link; none of them is touched.
    DuplicateLink { key: UserKey, dns: Vec<String> },
    /// The account is not in its supplier's OU; Adgang does not move accounts.
    WrongOrganizationalUnit {
        key: UserKey,
        dn: String,
        expected_parent: String,
    },
    /// The access period is over before the account was created, so it is not created.
    NotCreatedAlreadyExpired { key: UserKey, last_day: NaiveDate },
    /// The mass-deletion guard stopped all changes for a supplier.
    MassDeletionBlocked {
        supplier: String,
        deletions: usize,
        accounts: usize,
        max_share: f64,
    },
}

/// Everything a reconcile would do, and what it found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Organisational units to create before any account.
    pub organizational_units: Vec<Action>,
    /// Per account, the actions in order; accounts are independent of each other.
    pub accounts: Vec<AccountPlan>,
    pub findings: Vec<Finding>,
}

impl Plan {
    /// Returns true when the plan changes nothing in AD.
    pub fn is_empty(&self) -> bool {
        self.organizational_units.is_empty() && self.accounts.iter().all(|a| a.actions.is_empty())
    }

    /// Returns every action in the order it would run.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.organizational_units
            .iter()
            .chain(self.accounts.iter().flat_map(|a| &a.actions))
    }
}

/// Returns the DN of a supplier's OU.
pub fn organizational_unit_dn(ou: &str, managed_base: &str) -> String {
    format!("OU={},{managed_base}", escape_dn_value(ou))
}

/// Returns the names `plan` may give to the new users of `desired`, so the caller can ask AD
/// which are taken before planning.
pub fn username_candidates(
    desired: &DesiredState,
    snapshot_links: &BTreeSet<UserKey>,
) -> BTreeSet<String> {
    let new_users = desired.users().filter(|u| !snapshot_links.contains(&u.key));
    let mut names = BTreeSet::new();
    for user in new_users {
        match &user.spec.username {
            Some(requested) => {
                names.insert(requested.to_lowercase());
            }
            None => {
                // Enough numbered variants for every user of the same base name in this run.
                names.extend(username::candidates(
                    &user.spec.given_name,
                    &user.spec.surname,
                    8,
                ));
            }
        }
    }
    names
}

/// Computes the plan. `previous` holds the specs as last applied, when known, so that a
/// correction can be told apart from a change of the file (drift versus update).
pub fn plan(
    desired: &DesiredState,
    snapshot: &DirectorySnapshot,
    previous: Option<&BTreeMap<UserKey, SupplierUserSpec>>,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Plan {
    let mut plan = Plan::default();
    let mut taken = snapshot.taken_usernames.clone();
    let allowed_groups = desired.managed_groups();
    let managed_groups: BTreeMap<String, String> = snapshot
        .groups
        .iter()
        .filter(|(name, _)| allowed_groups.contains(*name))
        .map(|(name, dn)| (name.clone(), dn.clone()))
        .collect();
    let managed_group_dns: BTreeSet<String> = managed_groups
        .values()
        .map(|dn| dn.to_lowercase())
        .collect();

    let mut linked: BTreeMap<&UserKey, Vec<&Account>> = BTreeMap::new();
    for account in &snapshot.accounts {
        match &account.link {
            Some(key) => linked.entry(key).or_default().push(account),
            None => plan.findings.push(Finding::UnmanagedObject {
                dn: account.dn.clone(),
                username: account.username.clone(),
            }),
        }
    }
    for account in snapshot.accounts.iter().filter(|a| a.link.is_some()) {
        taken.insert(account.username.to_lowercase());
    }

    let context = Context {
        settings,
        now,
        managed_groups: &managed_groups,
        managed_group_dns: &managed_group_dns,
    };
    let mut per_supplier: BTreeMap<String, Vec<AccountPlan>> = BTreeMap::new();
    let mut frozen_suppliers = BTreeSet::new();

    for (supplier_name, supplier) in &desired.suppliers {
        let Some(spec) = &supplier.spec else {
            plan.findings.push(Finding::SupplierFrozen {
                supplier: supplier_name.clone(),
            });
            frozen_suppliers.insert(supplier_name.clone());
            continue;
        };
        if spec.suspend {
            plan.findings.push(Finding::SupplierSuspended {
                supplier: supplier_name.clone(),
            });
            frozen_suppliers.insert(supplier_name.clone());
            continue;
        }

        let ou_dn = organizational_unit_dn(&spec.organizational_unit, &settings.managed_base);
        let ou_exists = snapshot
            .organizational_units
            .iter()
            .any(|dn| same_dn(dn, &ou_dn));
        let mut needs_ou = false;

        for name in &supplier.frozen_users {
            let key = UserKey::new(supplier_name, name);
            let exists_in_ad = linked.contains_key(&key);
            plan.findings
                .push(Finding::UserFrozen { key, exists_in_ad });
        }

        for user in supplier.users.values() {
            let accounts = linked.get(&user.key).map(Vec::as_slice).unwrap_or_default();
            let previous_spec = previous.and_then(|p| p.get(&user.key));
            let outcome = match accounts {
                [] => context.plan_new(user, &ou_dn, &mut taken),
                [account] => context.plan_existing(user, account, &ou_dn, previous_spec),
                many => Outcome::Finding(Finding::DuplicateLink {
                    key: user.key.clone(),
                    dns: many.iter().map(|a| a.dn.clone()).collect(),
                }),
            };
            match outcome {
                Outcome::Account(account_plan, findings) => {
                    needs_ou |= matches!(account_plan.actions.first(), Some(Action::Create { .. }));
                    plan.findings.extend(findings);
                    if !account_plan.actions.is_empty() {
                        per_supplier
                            .entry(supplier_name.clone())
                            .or_default()
                            .push(account_plan);
                    }
                }
                Outcome::Finding(finding) => plan.findings.push(finding),
            }
        }

        if needs_ou && !ou_exists {
            plan.organizational_units
                .push(Action::CreateOrganizationalUnit {
                    supplier: supplier_name.clone(),
                    dn: ou_dn,
                });
        }
    }

    // Accounts whose file is gone: delete them, unless their supplier or file is frozen.
    for (key, accounts) in &linked {
        let supplier = desired.suppliers.get(&key.supplier);
        let declared = supplier.is_some_and(|s| s.users.contains_key(&key.name));
        let frozen = frozen_suppliers.contains(&key.supplier)
            || supplier.is_some_and(|s| s.frozen_users.contains(&key.name));
        if declared || frozen {
            continue;
        }
        if let [account] = accounts.as_slice() {
            per_supplier
                .entry(key.supplier.clone())
                .or_default()
                .push(AccountPlan {
                    key: (*key).clone(),
                    username: account.username.clone(),
                    actions: vec![Action::Delete {
                        key: (*key).clone(),
                        dn: account.dn.clone(),
                        reason: DeleteReason::FileRemoved,
                    }],
                    drift: false,
                });
        } else {
            plan.findings.push(Finding::DuplicateLink {
                key: (*key).clone(),
                dns: accounts.iter().map(|a| a.dn.clone()).collect(),
            });
        }
    }

    for (supplier, account_plans) in per_supplier {
        let accounts = linked.keys().filter(|k| k.supplier == supplier).count();
        let deletions = account_plans
            .iter()
            .filter(|p| p.actions.iter().any(|a| matches!(a, Action::Delete { .. })))
            .count();
        if settings.guard.blocks(&supplier, deletions, accounts) {
            plan.findings.push(Finding::MassDeletionBlocked {
                supplier: supplier.clone(),
                deletions,
                accounts,
                max_share: settings.guard.max_share,
            });
            plan.organizational_units.retain(|a| {
                !matches!(a, Action::CreateOrganizationalUnit { supplier: s, .. } if *s == supplier)
            });
            continue;
        }
        plan.accounts.extend(account_plans);
    }
    plan
}

impl DeletionGuard {
    /// Returns true when `deletions` of a supplier's `accounts` is more than the guard allows.
    pub fn blocks(&self, supplier: &str, deletions: usize, accounts: usize) -> bool {
        if deletions <= self.min_count || self.overridden.contains(supplier) || accounts == 0 {
            return false;
        }
        deletions as f64 / accounts as f64 > self.max_share
    }
}

enum Outcome {
    Account(AccountPlan, Vec<Finding>),
    Finding(Finding),
}

struct Context<'a> {
    settings: &'a Settings,
    now: DateTime<Utc>,
    /// Groups some supplier allows, lower-case name to DN.
    managed_groups: &'a BTreeMap<String, String>,
    /// DNs of those groups, lower case.
    managed_group_dns: &'a BTreeSet<String>,
}

/// Position of a user's access period relative to now.
#[derive(Debug, PartialEq, Eq)]
enum Period {
    /// Before `validFrom`: the account exists, disabled.
    NotStarted,
    /// Within the period: the account is enabled.
    Active,
    /// Past the last day of access (and any grace days): the account is deleted.
    Over(DeleteReason),
}

impl Context<'_> {
    fn period(&self, spec: &SupplierUserSpec) -> Period {
        let zone = self.settings.time_zone;
        let last_day = spec.last_day();
        let deletion_day = last_day
            .checked_add_days(Days::new(u64::from(self.settings.grace_days)))
            .unwrap_or(last_day);
        if self.now >= expiry::end_of_access(deletion_day, zone) {
            let employment_ended = spec
                .employment
                .end
                .is_some_and(|end| end <= spec.valid_until);
            let reason = if employment_ended {
                DeleteReason::EmploymentEnded
            } else {
                DeleteReason::Expired
            };
            return Period::Over(reason);
        }
        if self.now < expiry::start_of_day(spec.valid_from, zone) {
            Period::NotStarted
        } else {
            Period::Active
        }
    }

    fn desired_attributes(
        &self,
        spec: &SupplierUserSpec,
        username: &str,
    ) -> BTreeMap<String, String> {
        let mut attributes = BTreeMap::new();
        attributes.insert("givenName".to_owned(), spec.given_name.clone());
        attributes.insert("sn".to_owned(), spec.surname.clone());
        attributes.insert("displayName".to_owned(), spec.display_name());
        attributes.insert(
            "userPrincipalName".to_owned(),
            format!("{username}@{}", self.settings.upn_suffix),
        );
        if let Some(mail) = &spec.mail {
            attributes.insert("mail".to_owned(), mail.clone());
        }
        if let Some(staff_number) = &spec.staff_number {
            attributes.insert("employeeNumber".to_owned(), staff_number.clone());
        }
        attributes
    }

    /// Resolves the user's groups to DNs; unknown groups become findings.
    fn desired_groups(&self, user: &DesiredUser, findings: &mut Vec<Finding>) -> Vec<String> {
        let mut dns = Vec::new();
        for group in &user.spec.groups {
            match self.managed_groups.get(&group.to_lowercase()) {
                Some(dn) => dns.push(dn.clone()),
                None => findings.push(Finding::GroupNotFound {
                    key: user.key.clone(),
                    source: user.source.clone(),
                    group: group.clone(),
                }),
            }
        }
        dns
    }

    fn plan_new(&self, user: &DesiredUser, ou_dn: &str, taken: &mut BTreeSet<String>) -> Outcome {
        let spec = &user.spec;
        let key = &user.key;
        let enable = match self.period(spec) {
            Period::Over(_) => {
                return Outcome::Finding(Finding::NotCreatedAlreadyExpired {
                    key: key.clone(),
                    last_day: spec.last_day(),
                });
            }
            Period::NotStarted => false,
            Period::Active => true,
        };

        let username = match &spec.username {
            Some(requested) if taken.contains(&requested.to_lowercase()) => {
                return Outcome::Finding(Finding::UsernameTaken {
                    key: key.clone(),
                    source: user.source.clone(),
                    requested: requested.clone(),
                });
            }
            Some(requested) => requested.clone(),
            None => username::derive(&spec.given_name, &spec.surname, taken),
        };
        taken.insert(username.to_lowercase());

        let dn = format!("CN={},{ou_dn}", escape_dn_value(&username));
        let mut findings = Vec::new();
        let mut actions = vec![
            Action::Create {
                key: key.clone(),
                dn: dn.clone(),
                username: username.clone(),
                attributes: self.desired_attributes(spec, &username),
                account_expires: expiry::account_expires(spec.last_day(), self.settings.time_zone),
            },
            Action::SetInitialPassword {
                key: key.clone(),
                dn: dn.clone(),
                username: username.clone(),
                display_name: spec.display_name(),
            },
        ];
        for group_dn in self.desired_groups(user, &mut findings) {
            actions.push(Action::AddToGroup {
                key: key.clone(),
                dn: dn.clone(),
                group_dn,
            });
        }
        if enable {
            actions.push(Action::Enable {
                key: key.clone(),
                dn,
            });
        }

        let account_plan = AccountPlan {
            key: key.clone(),
            username,
            actions,
            drift: false,
        };
        Outcome::Account(account_plan, findings)
    }

    fn plan_existing(
        &self,
        user: &DesiredUser,
        account: &Account,
        ou_dn: &str,
        previous: Option<&SupplierUserSpec>,
    ) -> Outcome {
        let spec = &user.spec;
        let key = &user.key;
        let dn = &account.dn;

        if let Some(requested) = &spec.username
            && !requested.eq_ignore_ascii_case(&account.username)
        {
            return Outcome::Finding(Finding::UsernameChangeRejected {
                key: key.clone(),
                source: user.source.clone(),
                requested: requested.clone(),
                existing: account.username.clone(),
            });
        }

        let enable = match self.period(spec) {
            Period::Over(reason) => {
                let actions = vec![Action::Delete {
                    key: key.clone(),
                    dn: dn.clone(),
                    reason,
                }];
                let account_plan = AccountPlan {
                    key: key.clone(),
                    username: account.username.clone(),
                    actions,
                    drift: false,
                };
                return Outcome::Account(account_plan, Vec::new());
            }
            Period::NotStarted => false,
            Period::Active => true,
        };

        let mut findings = Vec::new();
        let parent = dn
            .split_once(',')
            .map(|(_, parent)| parent)
            .unwrap_or_default();
        if !same_dn(parent, ou_dn) {
            findings.push(Finding::WrongOrganizationalUnit {
                key: key.clone(),
                dn: dn.clone(),
                expected_parent: ou_dn.to_owned(),
            });
        }

        // The spec is unchanged since it was last applied, so any difference was made in AD.
        let spec_unchanged = previous.is_some_and(|p| p == spec);
        let mut actions = Vec::new();

        if account.credentials_pending {
            actions.push(Action::SetInitialPassword {
                key: key.clone(),
                dn: dn.clone(),
                username: account.username.clone(),
                display_name: spec.display_name(),
            });
        }

        let desired = self.desired_attributes(spec, &account.username);
        let changes = attribute_changes(&account.attributes, &desired);
        if !changes.is_empty() {
            actions.push(Action::UpdateAttributes {
                key: key.clone(),
                dn: dn.clone(),
                changes,
            });
        }

        let expires = expiry::account_expires(spec.last_day(), self.settings.time_zone);
        if account.account_expires != Some(expires) {
            actions.push(Action::SetExpiry {
                key: key.clone(),
                dn: dn.clone(),
                from: account.account_expires,
                to: expires,
            });
        }

        let desired_groups: BTreeSet<String> = self
            .desired_groups(user, &mut findings)
            .into_iter()
            .collect();
        let desired_lower: BTreeSet<String> =
            desired_groups.iter().map(|g| g.to_lowercase()).collect();
        let current_lower: BTreeSet<String> =
            account.member_of.iter().map(|g| g.to_lowercase()).collect();
        for group_dn in &desired_groups {
            if !current_lower.contains(&group_dn.to_lowercase()) {
                actions.push(Action::AddToGroup {
                    key: key.clone(),
                    dn: dn.clone(),
                    group_dn: group_dn.clone(),
                });
            }
        }
        for group_dn in &account.member_of {
            let lower = group_dn.to_lowercase();
            if !self.managed_group_dns.contains(&lower) {
                findings.push(Finding::UnmanagedGroupMembership {
                    key: key.clone(),
                    dn: dn.clone(),
                    group_dn: group_dn.clone(),
                });
            } else if !desired_lower.contains(&lower) {
                actions.push(Action::RemoveFromGroup {
                    key: key.clone(),
                    dn: dn.clone(),
                    group_dn: group_dn.clone(),
                });
            }
        }

        match (enable, account.enabled) {
            (true, false) => actions.push(Action::Enable {
                key: key.clone(),
                dn: dn.clone(),
            }),
            (false, true) => actions.push(Action::Disable {
                key: key.clone(),
                dn: dn.clone(),
            }),
            _ => {}
        }

        let drift = spec_unchanged
            && actions
                .iter()
                .any(|a| !matches!(a, Action::SetInitialPassword { .. } | Action::Enable { .. }));
        let account_plan = AccountPlan {
            key: key.clone(),
            username: account.username.clone(),
            actions,
            drift,
        };
        Outcome::Account(account_plan, findings)
    }
}

fn attribute_changes(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Vec<AttributeChange> {
    let mut changes = Vec::new();
    for attribute in crate::model::MANAGED_ATTRIBUTES {
        let from = current.get(attribute);
        let to = desired.get(attribute);
        if from != to {
            changes.push(AttributeChange {
                attribute: attribute.to_owned(),
                from: from.cloned(),
                to: to.cloned(),
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests;
