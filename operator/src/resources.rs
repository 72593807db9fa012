//! The two custom resources, `Supplier` and `SupplierUser`.
//!
//! One schema serves both ways in: the same YAML file is a Kubernetes object for
//! `kubectl apply` and a file in the git repository (`suppliers/<supplier>/supplier.yaml`,
//! `suppliers/<supplier>/users/<name>.yaml`). Every spec struct rejects unknown fields, and
//! dates are calendar dates in Europe/Copenhagen with `validUntil` inclusive.

use chrono::NaiveDate;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of both resources.
pub const GROUP: &str = "adgang.example.org";
/// API version of both resources.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in files and objects.
pub const API_VERSION: &str = "adgang.example.org/v1alpha1";

/// Maximum access period of a supplier whose spec sets none: one year.
pub const DEFAULT_MAX_ACCESS_DAYS: u32 = 366;

/// A private supplier whose staff get AD accounts. Written by the municipality only.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "adgang.example.org",
    version = "v1alpha1",
    kind = "Supplier",
    plural = "suppliers",
    namespaced,
    status = "SupplierStatus",
    printcolumn = r#"{"name":"Display name","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"OU","type":"string","jsonPath":".spec.organizationalUnit"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SupplierSpec {
    /// The supplier's legal name, as shown in reports and mail.
    #[schemars(length(min = 1, max = 200))]
    pub display_name: String,

    /// Danish company registration number (CVR), eight digits.
    #[schemars(regex(pattern = r"^[0-9]{8}$"))]
    pub cvr: String,

    /// Secure mail address (S/MIME) for credentials and the monthly overview.
    #[schemars(email, length(max = 254))]
    pub secure_mail: String,

    /// PEM of the S/MIME certificate of `secureMail`, to which credentials and reports are
    /// encrypted. A supplier without one gets no mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20000))]
    pub secure_mail_certificate: Option<String>,

    /// Name of the supplier's organisational unit, directly under the managed base.
    #[schemars(length(min = 1, max = 64))]
    pub organizational_unit: String,

    /// AD groups (by sAMAccountName) that this supplier's staff may be given.
    #[serde(default)]
    pub groups: Vec<String>,

    /// Maximum access period of one user, in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3660))]
    pub max_access_days: Option<u32>,

    /// Contact persons authorised to submit creations, extensions and deletions.
    #[serde(default)]
    pub contact_persons: Vec<ContactPerson>,

    /// Pauses all reconciliation of this supplier's users when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

impl SupplierSpec {
    /// Returns the longest access period allowed, in days.
    pub fn max_access_days(&self) -> u32 {
        self.max_access_days.unwrap_or(DEFAULT_MAX_ACCESS_DAYS)
    }
}

/// A person at the supplier, authorised by the municipality to submit changes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactPerson {
    /// Full name.
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
    /// The contact person's own AD username.
    #[schemars(length(min = 1, max = 20))]
    pub username: String,
    /// Public keys (OpenSSH or OpenPGP armour) that sign this person's commits.
    #[serde(default)]
    pub signing_keys: Vec<String>,
}

/// Observed state of a supplier.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupplierStatus {
    /// Generation of the spec that the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of accounts that AD holds for this supplier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<u32>,
    /// Conditions `Ready` (the supplier's OU and removals are applied) and `Suspended`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Outcome of the monthly overview and the reminders, written by the controller's mail
    /// schedule with its own field manager `adgang-mail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<SupplierMailStatus>,
}

/// Outcome of the mails that the controller's schedule sends to a supplier.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupplierMailStatus {
    /// Month of the last overview sent, written `YYYY-MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_overview: Option<String>,
    /// Error of the last mail that failed, naming the mail; empty once a later round sent
    /// every mail due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Time of `lastError`, in RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<String>,
}

/// A supplier's staff member who needs an AD account. Written by a contact person.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "adgang.example.org",
    version = "v1alpha1",
    kind = "SupplierUser",
    plural = "supplierusers",
    namespaced,
    status = "SupplierUserStatus",
    printcolumn = r#"{"name":"Supplier","type":"string","jsonPath":".spec.supplier"}"#,
    printcolumn = r#"{"name":"Username","type":"string","jsonPath":".status.username"}"#,
    printcolumn = r#"{"name":"Valid until","type":"string","format":"date","jsonPath":".spec.validUntil"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SupplierUserSpec {
    /// Name (`metadata.name`) of the supplier that employs this person.
    #[schemars(length(min = 1, max = 63))]
    pub supplier: String,

    /// Given name, as it should appear in AD.
    #[schemars(length(min = 1, max = 64))]
    pub given_name: String,

    /// Surname, as it should appear in AD.
    #[schemars(length(min = 1, max = 64))]
    pub surname: String,

    /// Work mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(email, length(max = 254))]
    pub mail: Option<String>,

    /// The supplier's own staff number for this person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,32}$"))]
    pub staff_number: Option<String>,

    /// Requested AD username (sAMAccountName). Derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r#"^[^"/\\\[\]:;|=,+*?<>@ ]{1,20}$"#))]
    pub username: Option<String>,

    /// First day of access.
    pub valid_from: NaiveDate,

    /// Last day of access, inclusive.
    pub valid_until: NaiveDate,

    /// The employment that the access follows.
    pub employment: Employment,

    /// AD groups (by sAMAccountName) to give the account; each must be allowed for the supplier.
    #[serde(default)]
    pub groups: Vec<String>,

    /// The signed confidentiality declaration, required for a new account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidentiality_declaration: Option<ConfidentialityDeclaration>,
}

/// Period of employment at the supplier.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Employment {
    /// First day of employment.
    pub start: NaiveDate,
    /// Last day of employment, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<NaiveDate>,
}

/// Confidentiality declaration received by the supplier on its secure mail.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfidentialityDeclaration {
    /// Date the signed declaration was received.
    pub received: NaiveDate,
    /// The supplier's reference to the declaration (a journal or document number).
    #[schemars(length(min = 1, max = 100))]
    pub reference: String,
}

impl SupplierUserSpec {
    /// Returns the last day of access: the earlier of `validUntil` and the employment end.
    pub fn last_day(&self) -> NaiveDate {
        match self.employment.end {
            Some(end) if end < self.valid_until => end,
            _ => self.valid_until,
        }
    }

    /// Returns the display name written to AD.
    pub fn display_name(&self) -> String {
        format!("{} {}", self.given_name, self.surname)
    }
}

/// Lifecycle phase of a supplier user.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// The account does not exist yet or waits, disabled, for `validFrom`.
    Pending,
    /// The account exists and is enabled.
    Active,
    /// The last day of access has passed.
    Expired,
    /// The account was deleted.
    Deleted,
}

/// Observed state of a supplier user.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupplierUserStatus {
    /// Generation of the spec that the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The AD username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Distinguished name of the AD account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinguished_name: Option<String>,
    /// objectGUID of the AD account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_guid: Option<String>,
    /// Last day of access that AD enforces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<NaiveDate>,
    /// Git commit last applied, when the object came from the git source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_commit: Option<String>,
    /// Conditions `Ready` (the account matches the spec), `Synced` (the last reconcile
    /// applied the spec) and `Expiring` (the last day of access is within 14 days).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Returns each CRD as YAML with the file name it has in `crds/`.
pub fn crd_files() -> Vec<(&'static str, String)> {
    use kube::CustomResourceExt;

    let render = |crd| serde_saphyr::to_string(&crd).expect("a CRD always serialises");
    vec![
        ("suppliers.adgang.example.org.yaml", render(Supplier::crd())),
        (
            "supplierusers.adgang.example.org.yaml",
            render(SupplierUser::crd()),
        ),
    ]
}

/// Renders the CRDs of both resources as one YAML stream, as `adgang crd` prints it.
pub fn crds_yaml() -> String {
    crd_files()
        .into_iter()
        .map(|(_, yaml)| format!("---\n{yaml}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `crds/` is generated by `adgang crd`; this fails when a change to the types was not
    /// followed by regenerating it.
    #[test]
    fn checked_in_crds_are_current() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
        for (name, yaml) in crd_files() {
            let path = folder.join(name);
            let checked_in = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
            assert!(
                checked_in == yaml,
                "{} is stale: regenerate it with scripts/generate-crds",
                path.display()
            );
        }
    }

    #[test]
    fn schema_rejects_unknown_fields() {
        let text = "supplier: s\ngivenName: A\nsurname: B\nvalidFrom: 2027-01-01\n\
                    validUntil: 2027-02-01\nemployment: {start: 2027-01-01}\ncpr: x\n";
        let error = serde_saphyr::from_str::<SupplierUserSpec>(text)
            .unwrap_err()
            .to_string();
        assert!(error.contains("cpr"), "{error}");
    }

    #[test]
    fn last_day_is_earlier_of_valid_until_and_employment_end() {
        let text = "supplier: s\ngivenName: A\nsurname: B\nvalidFrom: 2027-01-01\n\
                    validUntil: 2027-06-30\nemployment: {start: 2027-01-01, end: 2027-03-31}\n";
        let mut spec: SupplierUserSpec = serde_saphyr::from_str(text).unwrap();
        assert_eq!(
            spec.last_day(),
            NaiveDate::from_ymd_opt(2027, 3, 31).unwrap()
        );
        spec.employment.end = Some(NaiveDate::from_ymd_opt(2027, 12, 31).unwrap());
        assert_eq!(spec.last_day(), spec.valid_until);
        spec.employment.end = None;
        assert_eq!(spec.last_day(), spec.valid_until);
    }
}
