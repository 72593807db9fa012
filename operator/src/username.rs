//! AD usernames (sAMAccountName): the derivation rule and the checks.
//!
//! When a user's file names no username, one is derived from the name:
//!
//! 1. Take the first word of the given name and the last word of the surname (ignoring any
//!    part after a comma, such as ", jr."), joined by a dot: "Anne Marie Hansen" becomes
//!    "anne.hansen".
//! 2. Lower-case, then write the Danish letters out: æ→ae, ø→oe, å→aa. Other letters lose
//!    their marks (é→e, ü→u); anything that is then not a-z, 0-9 or a hyphen is dropped.
//! 3. Cut to 20 characters, the AD limit for sAMAccountName.
//! 4. When that name is taken anywhere in the domain, add 2, 3, … at the end, cutting the
//!    name further so that the whole stays within 20 characters.
//!
//! A username never changes once the account exists; the plan keeps the one AD holds.

use std::collections::BTreeSet;

use unicode_normalization::UnicodeNormalization;

/// Maximum length of a sAMAccountName, in characters.
pub const MAX_LENGTH: usize = 20;

/// Characters that AD does not allow in a sAMAccountName.
const FORBIDDEN: &[char] = &[
    '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>',
];

/// A username that breaks AD's rules for sAMAccountName.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// Empty username.
    #[error("username is empty")]
    Empty,
    /// Longer than [`MAX_LENGTH`].
    #[error("username {0:?} has {1} characters, more than the 20 that AD allows")]
    TooLong(String, usize),
    /// Contains a character AD rejects.
    #[error("username {0:?} contains {1:?}, which AD does not allow in a username")]
    ForbiddenCharacter(String, char),
    /// Ends with a dot, which AD rejects.
    #[error("username {0:?} ends with a dot, which AD does not allow")]
    TrailingDot(String),
}

/// Checks a requested username against AD's rules for sAMAccountName.
pub fn check(username: &str) -> Result<(), UsernameError> {
    if username.is_empty() {
        return Err(UsernameError::Empty);
    }

    let length = username.chars().count();
    if length > MAX_LENGTH {
        return Err(UsernameError::TooLong(username.to_owned(), length));
    }

    let forbidden = username
        .chars()
        .find(|c| FORBIDDEN.contains(c) || c.is_control() || c.is_whitespace() || *c == '@');
    if let Some(c) = forbidden {
        return Err(UsernameError::ForbiddenCharacter(username.to_owned(), c));
    }

    if username.ends_with('.') {
        return Err(UsernameError::TrailingDot(username.to_owned()));
    }
    Ok(())
}

/// Derives the base username from a name, before any collision number.
pub fn base(given_name: &str, surname: &str) -> String {
    let given = given_name.split_whitespace().next().unwrap_or("");
    let surname = surname.split(',').next().unwrap_or("");
    let family = surname.split_whitespace().last().unwrap_or("");

    let given = transliterate(given);
    let family = transliterate(family);
    let joined = match (given.is_empty(), family.is_empty()) {
        (false, false) => format!("{given}.{family}"),
        (false, true) => given,
        (true, false) => family,
        (true, true) => "bruger".to_owned(),
    };
    truncate(&joined, MAX_LENGTH)
}

/// Derives a username that is not in `taken` (lower case names).
pub fn derive(given_name: &str, surname: &str, taken: &BTreeSet<String>) -> String {
    let base = base(given_name, surname);
    if !taken.contains(&base) {
        return base;
    }

    (2u32..)
        .map(|n| numbered(&base, n))
        .find(|candidate| !taken.contains(candidate))
        .expect("an unbounded sequence of numbers always yields a free name")
}

/// Returns the names `derive` may try for this person, so the caller can ask AD which are
/// taken. The list covers the base name and the first `count` numbered variants.
pub fn candidates(given_name: &str, surname: &str, count: u32) -> Vec<String> {
    let base = base(given_name, surname);
    let mut names = vec![base.clone()];
    names.extend((2..count + 2).map(|n| numbered(&base, n)));
    names
}

/// Appends `n` to a base name, cutting the base so that the whole fits in 20 characters.
fn numbered(base: &str, n: u32) -> String {
    let suffix = n.to_string();
    let stem = truncate(base, MAX_LENGTH - suffix.len());
    format!("{}{suffix}", stem.trim_end_matches(['.', '-']))
}

fn transliterate(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.to_lowercase().chars() {
        match c {
            'æ' => out.push_str("ae"),
            'ø' => out.push_str("oe"),
            'å' => out.push_str("aa"),
            'ß' => out.push_str("ss"),
            _ => {
                // Decompose to strip combining marks (é → e + U+0301), keep plain ASCII.
                for d in c.nfd() {
                    if d.is_ascii_lowercase() || d.is_ascii_digit() || d == '-' {
                        out.push(d);
                    }
                }
            }
        }
    }
    out.trim_matches('-').to_owned()
}

fn truncate(name: &str, max: usize) -> String {
    let cut: String = name.chars().take(max).collect();
    cut.trim_end_matches(['.', '-']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_table() {
        let cases = [
            ("Anne", "Hansen", "anne.hansen"),
            ("Søren", "Østergård", "soeren.oestergaard"),
            ("Åse", "Bæk", "aase.baek"),
            ("Anne Marie", "Holm Jensen", "anne.jensen"),
            ("Per", "Holm, jr.", "per.holm"),
            ("José", "Müller", "jose.muller"),
            ("Zoë", "D'Angelo", "zoe.dangelo"),
            (
                "Marie-Louise",
                "Christoffersen-Vinther",
                "marie-louise.christo",
            ),
            ("ÆBLE", "ØRN", "aeble.oern"),
            ("李", "Wang", "wang"),
            ("", "", "bruger"),
        ];
        for (given, surname, expected) in cases {
            assert_eq!(base(given, surname), expected, "{given} {surname}");
        }
    }

    #[test]
    fn base_never_exceeds_limit() {
        let name = base("Åååååååååååå", "Øøøøøøøøøøøøøøøø");
        assert!(name.chars().count() <= MAX_LENGTH, "{name}");
        assert!(!name.ends_with('.'), "{name}");
    }

    #[test]
    fn derive_adds_number_on_collision() {
        let taken: BTreeSet<String> = ["anne.hansen".to_owned()].into();
        assert_eq!(derive("Anne", "Hansen", &taken), "anne.hansen2");

        let taken: BTreeSet<String> = ["anne.hansen", "anne.hansen2"].map(String::from).into();
        assert_eq!(derive("Anne", "Hansen", &taken), "anne.hansen3");
    }

    #[test]
    fn derive_keeps_numbered_name_within_limit() {
        let long = base("Marie-Louise", "Christoffersen");
        assert_eq!(long.chars().count(), 20);
        let taken: BTreeSet<String> = [long.clone()].into();
        let derived = derive("Marie-Louise", "Christoffersen", &taken);
        assert_eq!(derived, "marie-louise.christ2");
        assert!(derived.chars().count() <= MAX_LENGTH);
    }

    #[test]
    fn candidates_match_derive() {
        let candidates = candidates("Anne", "Hansen", 3);
        assert_eq!(
            candidates,
            [
                "anne.hansen",
                "anne.hansen2",
                "anne.hansen3",
                "anne.hansen4"
            ]
        );
        let taken: BTreeSet<String> = candidates[..3].iter().cloned().collect();
        assert_eq!(derive("Anne", "Hansen", &taken), "anne.hansen4");
    }

    #[test]
    fn check_table() {
        assert_eq!(check("anne.hansen"), Ok(()));
        assert_eq!(check("søren"), Ok(()));
        assert_eq!(check(""), Err(UsernameError::Empty));
        assert_eq!(
            check("abcdefghijklmnopqrstu"),
            Err(UsernameError::TooLong("abcdefghijklmnopqrstu".into(), 21))
        );
        for c in FORBIDDEN.iter().chain(&['@', ' ']) {
            let name = format!("a{c}b");
            assert_eq!(
                check(&name),
                Err(UsernameError::ForbiddenCharacter(name.clone(), *c))
            );
        }
        assert_eq!(
            check("anne."),
            Err(UsernameError::TrailingDot("anne.".into()))
        );
    }
}
