//! Repository files shared by the tests of git source mode.

/// Returns a valid `supplier.yaml` for `supplier`.
pub fn supplier_yaml(supplier: &str) -> String {
    format!(
        "apiVersion: adgang.example.org/v1alpha1
kind: Supplier
metadata:
  name: {supplier}
spec:
  displayName: {supplier} ApS
  cvr: \"12345678\"
  secureMail: sikker-post@{supplier}.example.org
  organizationalUnit: \"{supplier}\"
  groups: [Nexus-Brugere]
"
    )
}

/// Returns a valid user file for `name` of `supplier`.
pub fn user_yaml(supplier: &str, name: &str) -> String {
    format!(
        "apiVersion: adgang.example.org/v1alpha1
kind: SupplierUser
metadata:
  name: {name}
spec:
  supplier: {supplier}
  givenName: Testa
  surname: Testesen
  validFrom: 2027-01-04
  validUntil: 2027-06-30
  employment:
    start: 2027-01-04
  groups: [Nexus-Brugere]
  confidentialityDeclaration:
    received: 2026-12-20
    reference: TE-2026-1
"
    )
}

/// Returns the path of a supplier's file.
pub fn supplier_path(supplier: &str) -> String {
    format!("suppliers/{supplier}/supplier.yaml")
}

/// Returns the path of a user's file.
pub fn user_path(supplier: &str, name: &str) -> String {
    format!("suppliers/{supplier}/users/{name}.yaml")
}
