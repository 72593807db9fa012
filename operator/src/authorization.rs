//! Who may change what: the repository policy and the per-commit signature rules.
//!
//! Every commit in a range is checked, not only the head, because an unsigned commit under
//! a signed head would otherwise slip through. Each commit is judged against the policy and
//! the `supplier.yaml` files of its first parent, the state before the change, so nobody can
//! authorise themselves in the commit that adds their key. The rules, per changed path:
//!
//! - `suppliers/<s>/users/…`: a contact person of supplier `<s>`, or a reviewer.
//! - `suppliers/<s>/supplier.yaml`, the policy file, anything else: a reviewer.
//! - A merge commit: a reviewer or a forge key named in the policy, and its tree must equal
//!   a clean merge of its two parents, so it brings no changes of its own.
//! - A commit that touches several suppliers needs a signer allowed for all of them.
//!
//! A root commit has no earlier state, so its own policy file decides who may sign it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use git2::{Delta, DiffOptions, Oid, Repository, Tree};
use serde::{Deserialize, Serialize};

use crate::calendar::ClosingDays;
use crate::desired::SUPPLIERS_DIR;
use crate::resources::{API_VERSION, SupplierSpec};
use crate::signatures::{KeyError, KeyRing, ValidityWindow, parse_signing_keys};

/// Path of the repository policy file.
pub const POLICY_FILE: &str = "policy.yaml";

/// A policy or history problem that stops the check as a whole.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizationError {
    /// libgit2 failed to read the history.
    #[error("failed to read commit {commit}: {source}")]
    Git { commit: String, source: git2::Error },
    /// The policy file is missing at a commit that must be checked.
    #[error(
        "{POLICY_FILE} is missing at commit {commit}; a reviewer must add it (it lists the \
         reviewers and their signing keys)"
    )]
    MissingPolicy { commit: String },
    /// The policy file does not parse or contains an invalid key.
    #[error("invalid {POLICY_FILE} at commit {commit}: {message}")]
    InvalidPolicy { commit: String, message: String },
    /// The history lacks commits that must be checked, as in a shallow clone.
    #[error(
        "commit {commit} is not in the repository, so its signature cannot be checked; the \
         clone is probably shallow: run `git fetch --unshallow` (in CI, fetch with depth 0)"
    )]
    MissingCommit { commit: String },
}

impl AuthorizationError {
    fn git(commit: Oid, source: git2::Error) -> Self {
        Self::Git {
            commit: commit.to_string(),
            source,
        }
    }
}

/// The policy file as written.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyFile {
    api_version: String,
    kind: String,
    #[allow(dead_code)]
    metadata: serde_json::Value,
    spec: PolicySpec,
}

/// The repository policy: municipal reviewers, forge keys and closing days.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Municipal reviewers, who may change anything.
    #[serde(default)]
    pub reviewers: Vec<PolicySigner>,
    /// Keys with which a forge signs merges made in its web interface.
    #[serde(default)]
    pub forge_keys: Vec<PolicySigner>,
    /// Days the municipality is closed, besides public holidays.
    #[serde(default)]
    pub closing_days: ClosingDays,
}

/// A reviewer or a forge, with its keys.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySigner {
    pub name: String,
    pub signing_keys: Vec<PolicyKey>,
}

/// One signing key and the period in which it counts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyKey {
    /// An OpenSSH public key line or an ASCII-armoured OpenPGP public key block.
    pub key: String,
    /// First instant at which the key may sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<DateTime<Utc>>,
    /// First instant at which the key may no longer sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
}

/// Parses a policy file.
pub fn parse_policy(text: &str) -> Result<PolicySpec, String> {
    let file: PolicyFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if file.api_version != API_VERSION || file.kind != "RepositoryPolicy" {
        return Err(format!(
            "expected apiVersion {API_VERSION} and kind RepositoryPolicy, found {} and {}",
            file.api_version, file.kind
        ));
    }
    Ok(file.spec)
}

/// A role that a signing key gives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Reviewer,
    Forge,
    Contact(String),
}

/// A problem with one commit, naming the path, the signer and who may sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommitProblem {
    pub commit: String,
    pub summary: String,
    /// The path concerned, when the problem is about one path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Who signed: a name, or why no signer could be established.
    pub signer: String,
    /// Who may sign such a change.
    pub allowed: String,
    pub message: String,
}

impl fmt::Display for CommitProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = &self.commit[..self.commit.len().min(12)];
        write!(f, "commit {short} {:?}", self.summary)?;
        if let Some(path) = &self.path {
            write!(f, " changes {path}")?;
        }
        write!(
            f,
            ": {}; signed by {}; may be signed by {}",
            self.message, self.signer, self.allowed
        )
    }
}

/// The verdict on a range of commits.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RangeVerdict {
    /// Commits checked, oldest first.
    pub commits: usize,
    pub problems: Vec<CommitProblem>,
    /// Suppliers whose files a commit with a problem changed.
    pub blocked_suppliers: BTreeSet<String>,
    /// True when a commit with a problem changed a path outside any supplier's folder, or a
    /// merge brought changes of its own: then no supplier can be trusted.
    pub blocked_all: bool,
    /// Policy at the head, for the closing days.
    #[serde(skip)]
    pub head_policy: Option<PolicySpec>,
}

/// Checks every commit reachable from `head` but not from `base` (all history when `base`
/// is `None`).
pub fn check_range(
    repo: &Repository,
    base: Option<Oid>,
    head: Oid,
) -> Result<RangeVerdict, AuthorizationError> {
    let mut walk = repo
        .revwalk()
        .map_err(|e| AuthorizationError::git(head, e))?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
        .map_err(|e| AuthorizationError::git(head, e))?;
    walk.push(head)
        .map_err(|_| AuthorizationError::MissingCommit {
            commit: head.to_string(),
        })?;
    if let Some(base) = base {
        walk.hide(base)
            .map_err(|_| AuthorizationError::MissingCommit {
                commit: base.to_string(),
            })?;
    }

    let mut checker = Checker {
        repo,
        rings: HashMap::new(),
    };
    let mut verdict = RangeVerdict::default();
    for oid in walk {
        let oid = oid.map_err(|e| AuthorizationError::MissingCommit {
            commit: e.message().to_owned(),
        })?;
        verdict.commits += 1;
        checker.check_commit(oid, &mut verdict)?;
    }

    let head_tree = repo
        .find_commit(head)
        .and_then(|c| c.tree())
        .map_err(|e| AuthorizationError::git(head, e))?;
    verdict.head_policy = read_policy(repo, &head_tree, head)?;
    Ok(verdict)
}

/// Reads the policy at a tree; `None` when the file is absent.
fn read_policy(
    repo: &Repository,
    tree: &Tree<'_>,
    commit: Oid,
) -> Result<Option<PolicySpec>, AuthorizationError> {
    let Some(text) = read_blob(repo, tree, POLICY_FILE) else {
        return Ok(None);
    };
    parse_policy(&text)
        .map(Some)
        .map_err(|message| AuthorizationError::InvalidPolicy {
            commit: commit.to_string(),
            message,
        })
}

fn read_blob(repo: &Repository, tree: &Tree<'_>, path: &str) -> Option<String> {
    let entry = tree.get_path(std::path::Path::new(path)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    String::from_utf8(blob.content().to_vec()).ok()
}

/// Signer requirements of a set of changed paths.
#[derive(Default)]
struct Requirements {
    /// Suppliers whose users changed: a contact of each, or a reviewer.
    user_suppliers: BTreeSet<String>,
    /// Paths that only a reviewer may change, with the supplier they belong to, if any.
    reviewer_paths: Vec<(String, Option<String>)>,
    /// First changed path per supplier, for messages.
    first_path: BTreeMap<String, String>,
}

fn requirements(paths: &BTreeSet<String>) -> Requirements {
    let mut needs = Requirements::default();
    for path in paths {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            [dir, supplier, "users", ..] if *dir == SUPPLIERS_DIR => {
                needs.user_suppliers.insert((*supplier).to_owned());
                needs
                    .first_path
                    .entry((*supplier).to_owned())
                    .or_insert_with(|| path.clone());
            }
            [dir, supplier, ..] if *dir == SUPPLIERS_DIR => {
                needs
                    .reviewer_paths
                    .push((path.clone(), Some((*supplier).to_owned())));
            }
            _ => needs.reviewer_paths.push((path.clone(), None)),
        }
    }
    needs
}

struct Checker<'r> {
    repo: &'r Repository,
    /// Key rings by the blobs they were read from (the policy and every `supplier.yaml`), so
    /// a long history parses each set of keys once, however many user files change.
    rings: HashMap<Vec<(String, Oid)>, Ring>,
}

/// The keys valid in one state of the repository, with their roles.
#[derive(Clone)]
struct Ring {
    keys: KeyRing,
    /// Roles by owner name in `keys`.
    roles: BTreeMap<String, Role>,
    /// Contact persons per supplier, for messages.
    contacts: BTreeMap<String, Vec<String>>,
    /// Notes per supplier on contact persons who cannot sign because a key of theirs does
    /// not parse.
    key_errors: BTreeMap<String, Vec<String>>,
    reviewers: Vec<String>,
    forges: Vec<String>,
}

impl Checker<'_> {
    fn check_commit(
        &mut self,
        oid: Oid,
        verdict: &mut RangeVerdict,
    ) -> Result<(), AuthorizationError> {
        let commit = self
            .repo
            .find_commit(oid)
            .map_err(|e| AuthorizationError::git(oid, e))?;
        let summary = commit.summary().ok().flatten().unwrap_or("").to_owned();
        let tree = commit.tree().map_err(|e| AuthorizationError::git(oid, e))?;

        // The state before the change decides who may sign; a root commit has only its own.
        let (parent_tree, parent_id) = match commit.parent_count() {
            0 => (None, oid),
            _ => {
                let parent = commit
                    .parent(0)
                    .map_err(|_| AuthorizationError::MissingCommit {
                        commit: oid.to_string(),
                    })?;
                (
                    Some(parent.tree().map_err(|e| AuthorizationError::git(oid, e))?),
                    parent.id(),
                )
            }
        };
        let state_tree = parent_tree.as_ref().unwrap_or(&tree);
        let ring = self.ring(state_tree, parent_id)?;

        let problem =
            |path: Option<String>, signer: &str, allowed: String, message: String| CommitProblem {
                commit: oid.to_string(),
                summary: summary.clone(),
                path,
                signer: signer.to_owned(),
                allowed,
                message,
            };

        // Who signed, and in which roles.
        let (signer_name, roles) = match ring.keys.verify_commit(self.repo, oid) {
            Ok(signer) => {
                let roles: BTreeSet<Role> = ring
                    .keys
                    .entries()
                    .iter()
                    .filter(|e| e.key.fingerprint() == signer.fingerprint)
                    .filter(|e| e.valid.is_none_or(|w| w.contains(signer.signed_at.at)))
                    .filter_map(|e| ring.roles.get(&e.owner).cloned())
                    .collect();
                (
                    format!(
                        "{} (key {})",
                        display_owner(&signer.owner),
                        signer.fingerprint
                    ),
                    roles,
                )
            }
            Err(error) => (format!("nobody valid ({error})"), BTreeSet::new()),
        };
        let is_reviewer = roles.contains(&Role::Reviewer);

        if commit.parent_count() > 1 {
            let allowed = format!(
                "a reviewer ({}) or a forge key ({})",
                list(&ring.reviewers),
                list(&ring.forges)
            );
            if !is_reviewer && !roles.contains(&Role::Forge) {
                verdict.problems.push(problem(
                    None,
                    &signer_name,
                    allowed.clone(),
                    "a merge commit must be signed by a reviewer or a forge key".into(),
                ));
                verdict.blocked_all = true;
            }
            if let Some(message) = self.merge_problem(&commit)? {
                verdict
                    .problems
                    .push(problem(None, &signer_name, allowed, message));
                verdict.blocked_all = true;
            }
            return Ok(());
        }

        let paths = changed_paths(self.repo, parent_tree.as_ref(), &tree)
            .map_err(|e| AuthorizationError::git(oid, e))?;
        let needs = requirements(&paths);

        for supplier in &needs.user_suppliers {
            if is_reviewer || roles.contains(&Role::Contact(supplier.clone())) {
                continue;
            }
            let contacts = ring
                .contacts
                .get(supplier)
                .map(|c| list(c))
                .unwrap_or_else(|| "none listed".into());
            let allowed = format!(
                "a contact person of {supplier} ({contacts}) or a reviewer ({})",
                list(&ring.reviewers)
            );
            let path = needs.first_path.get(supplier).cloned();
            let mut message = format!("the signer may not change the users of {supplier}");
            for error in ring.key_errors.get(supplier).into_iter().flatten() {
                message.push_str(". ");
                message.push_str(error);
            }
            verdict
                .problems
                .push(problem(path, &signer_name, allowed, message));
            verdict.blocked_suppliers.insert(supplier.clone());
        }
        if !is_reviewer {
            for (path, supplier) in &needs.reviewer_paths {
                let allowed = format!("a reviewer ({})", list(&ring.reviewers));
                let message = "only a reviewer may change this file".to_owned();
                verdict
                    .problems
                    .push(problem(Some(path.clone()), &signer_name, allowed, message));
                match supplier {
                    Some(supplier) => {
                        verdict.blocked_suppliers.insert(supplier.clone());
                    }
                    None => verdict.blocked_all = true,
                }
            }
        }
        Ok(())
    }

    /// Returns why a merge commit is not a clean merge of its parents, if it is not.
    fn merge_problem(
        &self,
        commit: &git2::Commit<'_>,
    ) -> Result<Option<String>, AuthorizationError> {
        let oid = commit.id();
        if commit.parent_count() != 2 {
            return Ok(Some(format!(
                "a merge of {} parents is not supported; merge one branch at a time",
                commit.parent_count()
            )));
        }
        let ours = commit
            .parent(0)
            .map_err(|_| AuthorizationError::MissingCommit {
                commit: oid.to_string(),
            })?;
        let theirs = commit
            .parent(1)
            .map_err(|_| AuthorizationError::MissingCommit {
                commit: oid.to_string(),
            })?;
        let mut index = self
            .repo
            .merge_commits(&ours, &theirs, None)
            .map_err(|e| AuthorizationError::git(oid, e))?;
        if index.has_conflicts() {
            return Ok(Some(
                "the parents conflict, so the merge resolved them by hand, which counts as changes of its own; \
                 rebase the branch on its target and merge again"
                    .into(),
            ));
        }
        let clean = index
            .write_tree_to(self.repo)
            .map_err(|e| AuthorizationError::git(oid, e))?;
        if clean != commit.tree_id() {
            let clean_tree = self
                .repo
                .find_tree(clean)
                .map_err(|e| AuthorizationError::git(oid, e))?;
            let tree = commit.tree().map_err(|e| AuthorizationError::git(oid, e))?;
            let extra = changed_paths(self.repo, Some(&clean_tree), &tree)
                .map_err(|e| AuthorizationError::git(oid, e))?;
            return Ok(Some(format!(
                "the merge brings changes of its own beyond a clean merge of its parents ({}); \
                 make those changes in a signed commit of their own",
                extra.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(None)
    }

    /// Returns the key ring of a state, reading the policy and every `supplier.yaml` once.
    fn ring(&mut self, tree: &Tree<'_>, commit: Oid) -> Result<Ring, AuthorizationError> {
        let key = key_files(self.repo, tree);
        if let Some(ring) = self.rings.get(&key) {
            return Ok(ring.clone());
        }
        let policy = read_policy(self.repo, tree, commit)?.ok_or_else(|| {
            AuthorizationError::MissingPolicy {
                commit: commit.to_string(),
            }
        })?;
        let invalid = |e: KeyError| AuthorizationError::InvalidPolicy {
            commit: commit.to_string(),
            message: e.to_string(),
        };

        let mut ring = Ring {
            keys: KeyRing::new(),
            roles: BTreeMap::new(),
            contacts: BTreeMap::new(),
            key_errors: BTreeMap::new(),
            reviewers: Vec::new(),
            forges: Vec::new(),
        };
        for (signers, role, names) in [
            (&policy.reviewers, Role::Reviewer, &mut ring.reviewers),
            (&policy.forge_keys, Role::Forge, &mut ring.forges),
        ] {
            for signer in signers {
                let owner = format!("{}:{}", role_tag(&role), signer.name);
                for key in &signer.signing_keys {
                    let window = ValidityWindow {
                        from: key.valid_from,
                        until: key.valid_until,
                    };
                    let window =
                        (window.from.is_some() || window.until.is_some()).then_some(window);
                    ring.keys
                        .add_keys(&owner, std::slice::from_ref(&key.key), window)
                        .map_err(invalid)?;
                }
                ring.roles.insert(owner, role.clone());
                names.push(signer.name.clone());
            }
        }

        for (supplier, spec) in suppliers_at(self.repo, tree) {
            let mut names = Vec::new();
            for person in &spec.contact_persons {
                let owner = format!("contact:{supplier}:{}", person.username);
                // A malformed contact key makes that person unable to sign, not the whole check,
                // and the supplier's signature problems include the reason.
                match parse_signing_keys(&person.username, &person.signing_keys) {
                    Ok(keys) => {
                        for key in keys {
                            ring.keys.push(owner.clone(), key, None);
                        }
                        ring.roles.insert(owner, Role::Contact(supplier.clone()));
                    }
                    Err(error) => {
                        let path = format!("{SUPPLIERS_DIR}/{supplier}/supplier.yaml");
                        let note = format!(
                            "{} cannot sign until a reviewer corrects {path}: {error}",
                            person.username
                        );
                        ring.key_errors
                            .entry(supplier.clone())
                            .or_default()
                            .push(note);
                    }
                }
                names.push(format!("{} ({})", person.name, person.username));
            }
            ring.contacts.insert(supplier, names);
        }

        self.rings.insert(key, ring.clone());
        Ok(ring)
    }
}

/// Returns the files a key ring is read from, by name and blob id: the policy, then each
/// `suppliers/<s>/supplier.yaml` in order. An absent file has the zero id.
fn key_files(repo: &Repository, tree: &Tree<'_>) -> Vec<(String, Oid)> {
    let policy = tree
        .get_path(std::path::Path::new(POLICY_FILE))
        .map(|e| e.id());
    let mut files = vec![(POLICY_FILE.to_owned(), policy.unwrap_or(Oid::ZERO_SHA1))];
    let folder = tree
        .get_path(std::path::Path::new(SUPPLIERS_DIR))
        .ok()
        .and_then(|entry| repo.find_tree(entry.id()).ok());
    for supplier in folder.iter().flat_map(|folder| folder.iter()) {
        let id = repo
            .find_tree(supplier.id())
            .ok()
            .and_then(|t| t.get_name("supplier.yaml").map(|e| e.id()));
        let name = supplier.name().unwrap_or_default().to_owned();
        files.push((name, id.unwrap_or(Oid::ZERO_SHA1)));
    }
    files
}

fn role_tag(role: &Role) -> &'static str {
    match role {
        Role::Reviewer => "reviewer",
        Role::Forge => "forge",
        Role::Contact(_) => "contact",
    }
}

/// Turns a key ring owner ("reviewer:Name", "contact:supplier:username") into a readable name.
fn display_owner(owner: &str) -> String {
    match owner.split_once(':') {
        Some(("reviewer", name)) => format!("reviewer {name}"),
        Some(("forge", name)) => format!("forge key {name}"),
        Some(("contact", rest)) => match rest.split_once(':') {
            Some((supplier, username)) => format!("{username}, contact person of {supplier}"),
            None => rest.to_owned(),
        },
        _ => owner.to_owned(),
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none listed".to_owned()
    } else {
        names.join(", ")
    }
}

/// Reads every `suppliers/<s>/supplier.yaml` of a tree that parses; others have no contacts.
fn suppliers_at(repo: &Repository, tree: &Tree<'_>) -> Vec<(String, SupplierSpec)> {
    let mut suppliers = Vec::new();
    let Ok(entry) = tree.get_path(std::path::Path::new(SUPPLIERS_DIR)) else {
        return suppliers;
    };
    let Ok(folder) = repo.find_tree(entry.id()) else {
        return suppliers;
    };
    for supplier in folder.iter() {
        let Ok(name) = supplier.name() else { continue };
        let path = format!("{SUPPLIERS_DIR}/{name}/supplier.yaml");
        let Some(text) = read_blob(repo, tree, &path) else {
            continue;
        };
        if let Ok(spec) = crate::desired::parse_supplier_text(&path, name, &text) {
            suppliers.push((name.to_owned(), spec));
        }
    }
    suppliers
}

/// Returns the paths that differ between two trees (both sides of renames).
pub fn changed_paths(
    repo: &Repository,
    old: Option<&Tree<'_>>,
    new: &Tree<'_>,
) -> Result<BTreeSet<String>, git2::Error> {
    let mut options = DiffOptions::new();
    options.ignore_submodules(true);
    let diff = repo.diff_tree_to_tree(old, Some(new), Some(&mut options))?;
    let mut paths = BTreeSet::new();
    for delta in diff.deltas() {
        if delta.status() == Delta::Unmodified {
            continue;
        }
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(path) = file.path().and_then(|p| p.to_str()) {
                paths.insert(path.to_owned());
            }
        }
    }
    Ok(paths)
}
