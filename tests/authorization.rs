//! Who may change what, end to end: real git repositories with real SSH- and OpenPGP-signed
//! commits, checked by the `adgang validate` and `adgang sync` commands of the binary.
//!
//! Every validate test builds its own repository. Its base commit on `main` is signed by the
//! reviewer and contains `policy.yaml` and two suppliers, each with one contact person and
//! one user. The pull request is branch `pr`, and the submission date is fixed at [`TODAY`].
//! The sync tests need a Samba AD DC, which `tests/support/dc.rs` starts.

mod support;

use std::process::Command;

use chrono::NaiveDate;
use serde_json::Value;
use support::setup::{Run, Setup, TestRepo, day, supplier_yaml, user_yaml};
use support::signing::{GpgKey, SigningRepo, SshKey};

/// Submission date of every pull request: Wednesday 10 March 2027. The notice deadline for a
/// `validFrom` of Friday 12 March is today, and for Thursday 11 March it was yesterday.
const TODAY: &str = "2027-03-10";

const OMSORG: &str = "omsorg-nord";
const PLEJE: &str = "pleje-vest";
const REVIEWER: &str = "Ida Rasmussen";
const FORGE: &str = "Forgejo";

/// Who may change a user of omsorg-nord, as a problem names them.
const OMSORG_USER_SIGNERS: &str = "may be signed by a contact person of omsorg-nord (Birthe Lund \
                                   (birthe.lund)) or a reviewer (Ida Rasmussen)";
/// Who may change a file that only a reviewer may change.
const REVIEWER_SIGNERS: &str = "may be signed by a reviewer (Ida Rasmussen)";
/// Who may sign a merge commit.
const MERGE_SIGNERS: &str = "may be signed by a reviewer (Ida Rasmussen) or a forge key (Forgejo)";

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn user_path(supplier: &str, name: &str) -> String {
    format!("suppliers/{supplier}/users/{name}.yaml")
}

fn supplier_path(supplier: &str) -> String {
    format!("suppliers/{supplier}/supplier.yaml")
}

/// Renders a key as a YAML value: a quoted line for SSH, a literal block for OpenPGP armour.
/// `indent` is the indentation of the block's lines.
fn key_value(key: &str, indent: usize) -> String {
    if !key.contains('\n') {
        return format!("\"{key}\"");
    }
    let mut block = "|\n".to_owned();
    for line in key.lines() {
        if !line.is_empty() {
            block.push_str(&" ".repeat(indent));
            block.push_str(line);
        }
        block.push('\n');
    }
    block.trim_end().to_owned()
}

/// One signer in `policy.yaml`.
struct PolicyEntry<'a> {
    name: &'a str,
    key: &'a str,
    valid_until: Option<&'a str>,
}

fn signer_list_yaml(field: &str, entries: &[PolicyEntry]) -> String {
    if entries.is_empty() {
        return format!("  {field}: []\n");
    }
    let mut yaml = format!("  {field}:\n");
    for entry in entries {
        yaml.push_str(&format!(
            "    - name: {}\n      signingKeys:\n        - key: {}\n",
            entry.name,
            key_value(entry.key, 12)
        ));
        if let Some(until) = entry.valid_until {
            yaml.push_str(&format!("          validUntil: {until}\n"));
        }
    }
    yaml
}

fn policy_yaml(reviewers: &[PolicyEntry], forges: &[PolicyEntry]) -> String {
    format!(
        "apiVersion: adgang.example.org/v1alpha1
kind: RepositoryPolicy
metadata:
  name: policy
spec:
{}{}",
        signer_list_yaml("reviewers", reviewers),
        signer_list_yaml("forgeKeys", forges)
    )
}

/// A `supplier.yaml` with one contact person who signs with `keys`.
fn supplier_with_contact(
    supplier: &str,
    ou: &str,
    contact: &str,
    username: &str,
    keys: &[String],
) -> String {
    let mut yaml = supplier_yaml(supplier, ou);
    yaml.push_str(&format!(
        "  contactPersons:\n    - name: {contact}\n      username: {username}\n      signingKeys:\n"
    ));
    for key in keys {
        yaml.push_str(&format!("        - {}\n", key_value(key, 10)));
    }
    yaml
}

/// A new user with a confidentiality declaration, from `valid_from` to 30 September 2027.
fn new_user(supplier: &str, name: &str, given: &str, surname: &str, valid_from: &str) -> String {
    let declaration = "  confidentialityDeclaration:
    received: 2027-03-01
    reference: TE-2027-017
";
    user_yaml(
        supplier,
        name,
        given,
        surname,
        date(valid_from),
        date("2027-09-30"),
        declaration,
    )
}

/// Returns the 1-based line of the first line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
}

/// What a test changes in the base commit.
#[derive(Default)]
struct Base {
    /// `validUntil` of the reviewer's key in `policy.yaml`.
    reviewer_valid_until: Option<&'static str>,
    /// The reviewer's key as written in `policy.yaml`, in place of the real one.
    reviewer_key: Option<String>,
    /// Birthe Lund's signing keys in omsorg-nord's `supplier.yaml`, in place of her SSH key.
    birthe_keys: Option<Vec<String>>,
}

/// A repository with a reviewer, a forge and a contact person for each of two suppliers.
struct Fixture {
    repo: SigningRepo,
    reviewer: SshKey,
    forge: SshKey,
    /// Birthe Lund, contact person of omsorg-nord.
    birthe: SshKey,
    /// Jakob Friis, contact person of pleje-vest.
    jakob: SshKey,
    /// The base commit, on `main`.
    base: String,
}

impl Fixture {
    /// Generates the keys in a new repository, without committing anything.
    fn new() -> Self {
        let repo = SigningRepo::new();
        let keys = repo.key_directory();
        let reviewer = SshKey::generate(keys, "ida.rasmussen");
        let forge = SshKey::generate(keys, "forgejo");
        let birthe = SshKey::generate(keys, "birthe.lund");
        let jakob = SshKey::generate(keys, "jakob.friis");
        Self {
            repo,
            reviewer,
            forge,
            birthe,
            jakob,
            base: String::new(),
        }
    }

    /// Returns a fixture with the default base commit, and branch `pr` checked out on it.
    fn with_base() -> Self {
        let mut fixture = Self::new();
        fixture.commit_base(&Base::default());
        fixture
    }

    /// Commits the base on `main`, signed by the reviewer, and checks out branch `pr` on it.
    fn commit_base(&mut self, base: &Base) {
        let reviewer_key = base
            .reviewer_key
            .clone()
            .unwrap_or_else(|| self.reviewer.public_line.clone());
        let policy = policy_yaml(
            &[PolicyEntry {
                name: REVIEWER,
                key: &reviewer_key,
                valid_until: base.reviewer_valid_until,
            }],
            &[PolicyEntry {
                name: FORGE,
                key: &self.forge.public_line,
                valid_until: None,
            }],
        );
        self.repo.write("policy.yaml", &policy);

        let birthe_keys = base
            .birthe_keys
            .clone()
            .unwrap_or_else(|| vec![self.birthe.public_line.clone()]);
        let omsorg = supplier_with_contact(
            OMSORG,
            "Omsorg Nord",
            "Birthe Lund",
            "birthe.lund",
            &birthe_keys,
        );
        self.repo.write(&supplier_path(OMSORG), &omsorg);
        let pleje = supplier_with_contact(
            PLEJE,
            "Pleje Vest",
            "Jakob Friis",
            "jakob.friis",
            &[self.jakob.public_line.clone()],
        );
        self.repo.write(&supplier_path(PLEJE), &pleje);

        let anne = new_user(OMSORG, "anne-hansen", "Anne", "Hansen", "2027-01-04");
        self.repo.write(&user_path(OMSORG, "anne-hansen"), &anne);
        let karl = new_user(PLEJE, "karl-madsen", "Karl", "Madsen", "2027-01-04");
        self.repo.write(&user_path(PLEJE, "karl-madsen"), &karl);

        self.base = self.repo.commit(
            &self.reviewer.git_settings(),
            "Add the policy and suppliers",
        );
        self.repo.git(&[], &["checkout", "--quiet", "-b", "pr"]);
    }

    /// Writes a file and commits it with `settings` (none for an unsigned commit).
    fn commit_file(&self, settings: &[String], path: &str, content: &str, message: &str) -> String {
        self.repo.write(path, content);
        self.repo.commit(settings, message)
    }

    /// Runs `adgang validate` on the base commit and `head`.
    fn validate(&self, head: &str, format: &str) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_adgang"))
            .arg("validate")
            .arg("--repo")
            .arg(&self.repo.path)
            .args(["--base", &self.base, "--head", head, "--today", TODAY])
            .args(["--format", format])
            .env("ADGANG_LOG", "warn")
            .output()
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs `adgang validate --format json` and parses the report.
    fn validate_json(&self, head: &str) -> (Run, Value) {
        let run = self.validate(head, "json");
        let report = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("the JSON report does not parse: {e}\n{}", run.all()));
        (run, report)
    }

    /// Checks that validate rejects `head` with exactly one signature problem, which names
    /// `commit` and `path` and names who may sign, and returns that problem's message.
    fn expect_signature_problem(
        &self,
        head: &str,
        commit: &str,
        path: Option<&str>,
        allowed: &str,
    ) -> String {
        let (run, report) = self.validate_json(head);
        assert_eq!(run.code, 1, "{}", run.all());
        let problems = signature_problems(&report);
        assert_eq!(problems.len(), 1, "{}", run.all());
        let problem = problems[0];
        let message = problem["message"].as_str().unwrap().to_owned();
        assert!(message.contains(&commit[..12]), "{message}");
        assert_eq!(problem["path"].as_str(), path, "{}", run.all());
        assert!(message.contains(allowed), "{message}");
        assert!(!problem["hint"].as_str().unwrap().is_empty(), "{message}");

        let text = self.validate(head, "text");
        assert_eq!(text.code, 1, "{}", text.all());
        assert!(text.stdout.contains(&message), "{}", text.all());
        message
    }
}

fn signature_problems(report: &Value) -> Vec<&Value> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["rule"] == "signature")
        .collect()
}

#[test]
fn in_time_creation_is_acceptable() {
    let fixture = Fixture::with_base();
    let mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12");
    let path = user_path(OMSORG, "mette-kjaer");
    let birthe = fixture.birthe.git_settings();
    let head = fixture.commit_file(&birthe, &path, &mette, "Add Mette Kjær");

    let text = fixture.validate(&head, "text");
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(text.stdout.contains("No problems"), "{}", text.all());
    assert!(
        text.stdout
            .contains("  omsorg-nord:\n    create: mette-kjaer\n"),
        "{}",
        text.all()
    );

    let (json, report) = fixture.validate_json(&head);
    assert_eq!(json.code, 0, "{}", json.all());
    assert_eq!(report["problems"], serde_json::json!([]), "{}", json.all());
    assert_eq!(report["commits"], 1, "{}", json.all());
    assert_eq!(
        report["plan"][OMSORG]["created"],
        serde_json::json!(["mette-kjaer"]),
        "{}",
        json.all()
    );

    let github = fixture.validate(&head, "github");
    assert_eq!(github.code, 0, "{}", github.all());
    assert!(!github.stdout.contains("::error"), "{}", github.all());
    assert!(github.stdout.contains("::notice"), "{}", github.all());
}

#[test]
fn late_creation_names_deadline() {
    let fixture = Fixture::with_base();
    let mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-11");
    let path = user_path(OMSORG, "mette-kjaer");
    let birthe = fixture.birthe.git_settings();
    let head = fixture.commit_file(&birthe, &path, &mette, "Add Mette Kjær");

    let text = fixture.validate(&head, "text");
    assert_eq!(text.code, 1, "{}", text.all());
    assert!(
        text.stdout
            .contains("after the deadline 2027-03-09 for validFrom 2027-03-11"),
        "{}",
        text.all()
    );
    assert!(
        text.stdout
            .contains("the earliest validFrom that is in time now is 2027-03-12"),
        "{}",
        text.all()
    );

    let line = line_of(&mette, "  validFrom:");
    let github = fixture.validate(&head, "github");
    assert_eq!(github.code, 1, "{}", github.all());
    let annotation = format!("::error file={path},line={line},");
    assert!(github.stdout.contains(&annotation), "{}", github.all());

    let (json, report) = fixture.validate_json(&head);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{}", json.all());
    assert_eq!(problems[0]["rule"], "notice", "{}", json.all());
    assert_eq!(problems[0]["field"], "spec.validFrom", "{}", json.all());
    assert_eq!(problems[0]["line"], line, "{}", json.all());
}

#[test]
fn unsigned_commit_is_rejected() {
    let fixture = Fixture::with_base();
    let mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12");
    let path = user_path(OMSORG, "mette-kjaer");
    let head = fixture.commit_file(&[], &path, &mette, "Add Mette Kjær");

    let message = fixture.expect_signature_problem(&head, &head, Some(&path), OMSORG_USER_SIGNERS);

    assert!(message.contains("is not signed"), "{message}");
}

#[test]
fn other_suppliers_contact_is_rejected() {
    let fixture = Fixture::with_base();
    let mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12");
    let path = user_path(OMSORG, "mette-kjaer");
    let jakob = fixture.jakob.git_settings();
    let head = fixture.commit_file(&jakob, &path, &mette, "Add Mette Kjær");

    let message = fixture.expect_signature_problem(&head, &head, Some(&path), OMSORG_USER_SIGNERS);

    assert!(
        message.contains("the signer may not change the users of omsorg-nord"),
        "{message}"
    );
    let signer = format!(
        "signed by jakob.friis, contact person of pleje-vest (key {})",
        fixture.jakob.fingerprint()
    );
    assert!(message.contains(&signer), "{message}");
}

#[test]
fn expired_reviewer_key_is_rejected() {
    let mut fixture = Fixture::new();
    fixture.commit_base(&Base {
        reviewer_valid_until: Some("2020-01-01T00:00:00Z"),
        ..Base::default()
    });
    let path = supplier_path(OMSORG);
    let mut supplier = fixture.repo.git(&[], &["show", &format!("HEAD:{path}")]);
    supplier.push_str("\n  maxAccessDays: 200\n");
    let reviewer = fixture.reviewer.git_settings();
    let head = fixture.commit_file(&reviewer, &path, &supplier, "Shorten the maximum access");

    let message = fixture.expect_signature_problem(&head, &head, Some(&path), REVIEWER_SIGNERS);

    assert!(
        message.contains("only a reviewer may change this file"),
        "{message}"
    );
    assert!(
        message.contains("which is valid only until 2020-01-01T00:00:00Z"),
        "{message}"
    );
}

#[test]
fn tampered_commit_is_rejected() {
    let fixture = Fixture::with_base();
    let mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12");
    let path = user_path(OMSORG, "mette-kjaer");
    let birthe = fixture.birthe.git_settings();
    let signed = fixture.commit_file(&birthe, &path, &mette, "Add Mette Kjær");
    let object = fixture.repo.commit_object(&signed);
    let tampered = fixture
        .repo
        .write_commit_object(&object.replace("Add Mette Kjær", "Add Mette Kjær for good"));
    fixture
        .repo
        .git(&[], &["update-ref", "refs/heads/pr", &tampered]);

    let message =
        fixture.expect_signature_problem(&tampered, &tampered, Some(&path), OMSORG_USER_SIGNERS);

    assert_ne!(tampered, signed);
    assert!(message.contains("has a bad SSH signature"), "{message}");
    assert!(message.contains(&fixture.birthe.fingerprint()), "{message}");
}

#[test]
fn contact_changing_supplier_file_is_rejected() {
    let fixture = Fixture::with_base();
    let path = supplier_path(OMSORG);
    let mut supplier = fixture.repo.git(&[], &["show", &format!("HEAD:{path}")]);
    supplier.push_str("\n  maxAccessDays: 730\n");
    let birthe = fixture.birthe.git_settings();
    let head = fixture.commit_file(&birthe, &path, &supplier, "Allow two years of access");

    let message = fixture.expect_signature_problem(&head, &head, Some(&path), REVIEWER_SIGNERS);

    assert!(
        message.contains("only a reviewer may change this file"),
        "{message}"
    );
    assert!(
        message.contains("signed by birthe.lund, contact person of omsorg-nord"),
        "{message}"
    );
}

#[test]
fn unsigned_commit_under_signed_head_is_rejected() {
    let fixture = Fixture::with_base();
    let mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12");
    let mette_path = user_path(OMSORG, "mette-kjaer");
    let unsigned = fixture.commit_file(&[], &mette_path, &mette, "Add Mette Kjær");
    let line = new_user(OMSORG, "line-berg", "Line", "Berg", "2027-03-12");
    let line_path = user_path(OMSORG, "line-berg");
    let birthe = fixture.birthe.git_settings();
    let head = fixture.commit_file(&birthe, &line_path, &line, "Add Line Berg");

    let message =
        fixture.expect_signature_problem(&head, &unsigned, Some(&mette_path), OMSORG_USER_SIGNERS);

    assert!(message.contains("is not signed"), "{message}");
    assert!(!message.contains(&head[..12]), "{message}");
}

#[test]
fn forge_merge_with_own_changes_is_rejected() {
    let fixture = Fixture::with_base();
    let mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12");
    let birthe = fixture.birthe.git_settings();
    fixture.commit_file(
        &birthe,
        &user_path(OMSORG, "mette-kjaer"),
        &mette,
        "Add Mette Kjær",
    );

    fixture.repo.git(&[], &["checkout", "--quiet", "main"]);
    let arguments = ["merge", "--quiet", "--no-ff", "--no-commit", "pr"];
    fixture.repo.git(&[], &arguments);
    let extra = new_user(PLEJE, "per-holm", "Per", "Holm", "2027-03-12");
    let extra_path = user_path(PLEJE, "per-holm");
    let forge = fixture.forge.git_settings();
    let merge = fixture.commit_file(&forge, &extra_path, &extra, "Merge pull request 7");
    assert_eq!(
        fixture.repo.rev_parse("HEAD^2"),
        fixture.repo.rev_parse("pr")
    );

    let message = fixture.expect_signature_problem(&merge, &merge, None, MERGE_SIGNERS);

    let own_changes = format!(
        "the merge brings changes of its own beyond a clean merge of its parents ({extra_path})"
    );
    assert!(message.contains(&own_changes), "{message}");
    assert!(message.contains("signed by forge key Forgejo"), "{message}");
}

#[test]
fn clean_forge_merge_passes() {
    let fixture = Fixture::with_base();
    let mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12");
    let birthe = fixture.birthe.git_settings();
    fixture.commit_file(
        &birthe,
        &user_path(OMSORG, "mette-kjaer"),
        &mette,
        "Add Mette Kjær",
    );

    fixture.repo.git(&[], &["checkout", "--quiet", "main"]);
    let arguments = [
        "merge",
        "--quiet",
        "--no-ff",
        "-m",
        "Merge pull request 7",
        "pr",
    ];
    fixture.repo.git(&fixture.forge.git_settings(), &arguments);
    let merge = fixture.repo.rev_parse("HEAD");
    assert_eq!(
        fixture.repo.rev_parse("HEAD^2"),
        fixture.repo.rev_parse("pr")
    );

    let (run, report) = fixture.validate_json(&merge);

    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report["problems"], serde_json::json!([]), "{}", run.all());
    assert_eq!(report["commits"], 2, "{}", run.all());
}

#[test]
fn cpr_number_in_comment_is_rejected() {
    // Invented digits in the shape DDMMYY-NNNN, which the CPR detector matches.
    let digits = "120385-4321";
    let fixture = Fixture::with_base();
    let mut mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12");
    mette.push_str(&format!("# CPR {digits}, for the payroll\n"));
    let path = user_path(OMSORG, "mette-kjaer");
    let birthe = fixture.birthe.git_settings();
    let head = fixture.commit_file(&birthe, &path, &mette, "Add Mette Kjær");

    let line = line_of(&mette, "# CPR");
    for format in ["text", "github", "json"] {
        let run = fixture.validate(&head, format);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stdout.contains("CPR numbers must never be committed"),
            "{}",
            run.all()
        );
        for excerpt in [digits, "1203854321", "120385", "4321"] {
            assert!(!run.all().contains(excerpt), "{format}: {}", run.all());
        }
    }
    let (run, report) = fixture.validate_json(&head);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{}", run.all());
    assert_eq!(problems[0]["rule"], "schema", "{}", run.all());
    assert_eq!(problems[0]["path"], path, "{}", run.all());
    assert_eq!(problems[0]["line"], line, "{}", run.all());
}

#[test]
fn openpgp_signed_commit_passes() {
    let mut fixture = Fixture::new();
    let gpg_key = GpgKey::generate(fixture.repo.key_directory(), "birthe.lund");
    fixture.repo.use_gnupg_home(&gpg_key);
    fixture.commit_base(&Base {
        birthe_keys: Some(vec![gpg_key.armored.clone()]),
        ..Base::default()
    });
    let mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12");
    let path = user_path(OMSORG, "mette-kjaer");
    let head = fixture.commit_file(&gpg_key.git_settings(), &path, &mette, "Add Mette Kjær");
    let signature = fixture.repo.commit_object(&head);
    assert!(signature.contains("-----BEGIN PGP SIGNATURE-----"));

    let (run, report) = fixture.validate_json(&head);

    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(report["problems"], serde_json::json!([]), "{}", run.all());
}

#[test]
fn unknown_base_is_usage_error() {
    let mut fixture = Fixture::with_base();
    let head = fixture.repo.rev_parse("HEAD");
    let missing = "0123456789abcdef0123456789abcdef01234567";
    fixture.base = missing.to_owned();

    let run = fixture.validate(&head, "text");

    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains(&format!(
            "base \"{missing}\" does not exist in the repository"
        )),
        "{}",
        run.all()
    );
    assert!(run.stdout.is_empty(), "{}", run.all());
}

#[test]
fn malformed_policy_key_is_usage_error() {
    let mut fixture = Fixture::new();
    let reviewer = &fixture.reviewer.public_line;
    let malformed = reviewer.replacen("AAAA", "AAAB", 1);
    fixture.commit_base(&Base {
        reviewer_key: Some(malformed),
        ..Base::default()
    });
    let mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12");
    let path = user_path(OMSORG, "mette-kjaer");
    let birthe = fixture.birthe.git_settings();
    let head = fixture.commit_file(&birthe, &path, &mette, "Add Mette Kjær");

    let run = fixture.validate(&head, "text");

    assert_eq!(run.code, 2, "{}", run.all());
    let expected = format!("invalid policy.yaml at commit {}", fixture.base);
    assert!(run.stderr.contains(&expected), "{}", run.all());
    assert!(
        run.stderr.contains("is not a valid OpenSSH public key"),
        "{}",
        run.all()
    );
}

/// A malformed key in `supplier.yaml` does not stop the check, but its owner cannot sign
/// with any key, and the problem gives the reason. The check exits 1, not 2, because the
/// rest of the repository can still be checked.
#[test]
fn malformed_contact_key_cannot_sign() {
    let mut fixture = Fixture::new();
    let birthe = &fixture.birthe.public_line;
    let malformed = birthe.replacen("AAAA", "AAAB", 1);
    fixture.commit_base(&Base {
        birthe_keys: Some(vec![birthe.clone(), malformed]),
        ..Base::default()
    });
    let mette = new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12");
    let path = user_path(OMSORG, "mette-kjaer");
    let birthe = fixture.birthe.git_settings();
    let head = fixture.commit_file(&birthe, &path, &mette, "Add Mette Kjær");

    let message = fixture.expect_signature_problem(&head, &head, Some(&path), OMSORG_USER_SIGNERS);

    assert!(message.contains(&fixture.birthe.fingerprint()), "{message}");
    let note = "birthe.lund cannot sign until a reviewer corrects \
                suppliers/omsorg-nord/supplier.yaml: signing key signingKeys[1] of birthe.lund";
    assert!(message.contains(note), "{message}");
    assert!(
        message.contains("is not a valid OpenSSH public key"),
        "{message}"
    );
}

/// The keys and the root commit of a signed sync test.
struct SyncFixture {
    setup: Setup,
    birthe: SshKey,
}

/// Commits everything in the work tree, signed with `key`, and returns the commit id.
fn commit_signed(repo: &TestRepo, key: &SshKey, message: &str) -> String {
    repo.git(&["add", "--all"]);
    let mut arguments = Vec::new();
    for setting in key.git_settings() {
        arguments.push("-c".to_owned());
        arguments.push(setting);
    }
    arguments.extend(["commit", "--quiet", "-m", message].map(String::from));
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    repo.git(&arguments);
    repo.git(&["rev-parse", "HEAD"])
}

fn sync_user(supplier: &str, name: &str, given: &str, surname: &str) -> String {
    user_yaml(supplier, name, given, surname, day(-10), day(100), "")
}

impl SyncFixture {
    /// Starts a DC with signature checks on, commits two suppliers with one user each,
    /// signed by the reviewer, and syncs them.
    fn start() -> Self {
        let setup = Setup::new_signed();
        let keys = setup.work.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        let reviewer = SshKey::generate(&keys, "ida.rasmussen");
        let birthe = SshKey::generate(&keys, "birthe.lund");
        let jakob = SshKey::generate(&keys, "jakob.friis");

        let repo = &setup.repo;
        let policy = policy_yaml(
            &[PolicyEntry {
                name: REVIEWER,
                key: &reviewer.public_line,
                valid_until: None,
            }],
            &[],
        );
        repo.write("policy.yaml", &policy);
        let omsorg = supplier_with_contact(
            OMSORG,
            "Omsorg Nord",
            "Birthe Lund",
            "birthe.lund",
            &[birthe.public_line.clone()],
        );
        repo.write(&supplier_path(OMSORG), &omsorg);
        let pleje = supplier_with_contact(
            PLEJE,
            "Pleje Vest",
            "Jakob Friis",
            "jakob.friis",
            &[jakob.public_line.clone()],
        );
        repo.write(&supplier_path(PLEJE), &pleje);
        let anne = sync_user(OMSORG, "anne-hansen", "Anne", "Hansen");
        repo.write(&user_path(OMSORG, "anne-hansen"), &anne);
        let karl = sync_user(PLEJE, "karl-madsen", "Karl", "Madsen");
        repo.write(&user_path(PLEJE, "karl-madsen"), &karl);
        commit_signed(repo, &reviewer, "Add the policy and suppliers");

        setup.sync_ok();
        assert!(
            setup.account("anne.hansen").is_some(),
            "anne.hansen created"
        );
        assert!(
            setup.account("karl.madsen").is_some(),
            "karl.madsen created"
        );
        Self { setup, birthe }
    }
}

#[test]
fn sync_skips_commit_for_other_supplier() {
    let fixture = SyncFixture::start();
    let setup = &fixture.setup;
    let mette = sync_user(OMSORG, "mette-kjaer", "Mette", "Kjær");
    setup.repo.write(&user_path(OMSORG, "mette-kjaer"), &mette);
    let authorised = commit_signed(&setup.repo, &fixture.birthe, "Add Mette Kjær");
    let per = sync_user(PLEJE, "per-holm", "Per", "Holm");
    setup.repo.write(&user_path(PLEJE, "per-holm"), &per);
    let unauthorised = commit_signed(&setup.repo, &fixture.birthe, "Add Per Holm");

    let run = setup.run(&["sync"]);

    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains(&unauthorised[..12]), "{}", run.all());
    assert!(!run.stdout.contains(&authorised[..12]), "{}", run.all());
    assert!(
        run.stdout.contains(&user_path(PLEJE, "per-holm")),
        "{}",
        run.all()
    );
    assert!(setup.account("mette.kjaer").is_some(), "{}", run.all());
    assert!(setup.account("per.holm").is_none(), "{}", run.all());
    assert!(setup.account("karl.madsen").is_some(), "{}", run.all());

    // The head is not recorded as applied, so the next run reports the commit again.
    let again = setup.run(&["sync"]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(
        again.stdout.contains(&unauthorised[..12]),
        "{}",
        again.all()
    );
    assert!(setup.account("per.holm").is_none(), "{}", again.all());
}

#[test]
fn sync_applies_nothing_after_policy_change() {
    let fixture = SyncFixture::start();
    let setup = &fixture.setup;
    let mette = sync_user(OMSORG, "mette-kjaer", "Mette", "Kjær");
    setup.repo.write(&user_path(OMSORG, "mette-kjaer"), &mette);
    commit_signed(&setup.repo, &fixture.birthe, "Add Mette Kjær");
    // Birthe lists herself as a reviewer, which only a reviewer may do.
    let policy = policy_yaml(
        &[PolicyEntry {
            name: "Birthe Lund",
            key: &fixture.birthe.public_line,
            valid_until: None,
        }],
        &[],
    );
    setup.repo.write("policy.yaml", &policy);
    let policy_change = commit_signed(&setup.repo, &fixture.birthe, "Add a reviewer");

    let run = setup.run(&["sync"]);

    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("nothing was applied"), "{}", run.all());
    assert!(run.stderr.contains(&policy_change[..12]), "{}", run.all());
    assert!(run.stderr.contains("changes policy.yaml"), "{}", run.all());
    assert!(setup.account("mette.kjaer").is_none(), "{}", run.all());
    assert!(setup.account("anne.hansen").is_some(), "{}", run.all());
}

#[test]
fn username_of_unchanged_file_is_taken() {
    let mut fixture = Fixture::with_base();
    let birthe = fixture.birthe.git_settings();
    let first = format!(
        "{}  username: mkjaer\n",
        new_user(OMSORG, "mette-kjaer", "Mette", "Kjær", "2027-03-12")
    );
    let first_path = user_path(OMSORG, "mette-kjaer");
    fixture.base = fixture.commit_file(&birthe, &first_path, &first, "Add Mette Kjær");

    let second = format!(
        "{}  username: MKjaer\n",
        new_user(OMSORG, "mads-kjaer", "Mads", "Kjær", "2027-03-12")
    );
    let second_path = user_path(OMSORG, "mads-kjaer");
    let head = fixture.commit_file(&birthe, &second_path, &second, "Add Mads Kjær");

    let (run, report) = fixture.validate_json(&head);
    assert_eq!(run.code, 1, "{}", run.all());
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{}", run.all());
    assert_eq!(problems[0]["path"], second_path.as_str(), "{}", run.all());
    assert_eq!(problems[0]["field"], "spec.username", "{}", run.all());
    let message = problems[0]["message"].as_str().unwrap();
    assert!(message.contains(&first_path), "{message}");
}
