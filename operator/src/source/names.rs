//! Helpers that classify a repository URL and derive file and directory names from it.
//!
//! The names must be stable across releases and restarts, because they locate the cache
//! clone and the state file. They therefore use FNV-1a rather than `std::hash`, whose
//! output may change between Rust versions.

/// Maximum length of the readable part of a derived name, before the hash.
const MAX_SLUG_LENGTH: usize = 48;

/// Returns whether `url` names a remote to clone, as opposed to a local path to open.
///
/// A remote is anything with a scheme (`file://`, `https://`, `ssh://`) or git's scp-like
/// form `user@host:path`. As in git, a colon only makes an scp-like URL when no slash
/// comes before it, so `./dir:name` stays a local path.
pub(crate) fn is_remote_url(url: &str) -> bool {
    if url.contains("://") {
        return true;
    }

    match url.find(':') {
        Some(colon) => {
            let host = &url[..colon];
            !host.is_empty() && !host.contains('/')
        }
        None => false,
    }
}

/// Removes the user information (`user:token@`) from a URL with a scheme.
///
/// Tokens are often placed in that part of an https URL, and the result is written to
/// logs, error messages and the state file. It is also the key of the state file, so a
/// rotated token keeps the recorded history. Local paths and scp-like URLs are returned
/// unchanged, because they cannot carry a password.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };

    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());

    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..authority_start], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Derives the directory name of the cache clone of `url`.
///
/// The name is a readable slug of the end of the URL, without its scheme, followed by a hash
/// of the redacted URL, so two URLs that share a slug still get separate clones.
pub(crate) fn cache_directory_name(url: &str) -> String {
    let redacted = redact_url(url);
    format!(
        "{}-{:016x}",
        slug(without_scheme(&redacted)),
        fnv1a(redacted.as_bytes())
    )
}

/// Derives the file name that stores the last applied commit of `url` and `branch`.
pub(crate) fn state_file_name(url: &str, branch: &str) -> String {
    let redacted = redact_url(url);
    let key = format!("{redacted}\n{branch}");

    format!(
        "last-applied-{}-{}-{:016x}.json",
        slug(without_scheme(&redacted)),
        slug(branch),
        fnv1a(key.as_bytes())
    )
}

fn without_scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// Keeps the last [`MAX_SLUG_LENGTH`] characters of `text`, with every character other
/// than ASCII letters, digits, `.` and `_` replaced by `-`.
fn slug(text: &str) -> String {
    let trimmed = text.trim_end_matches(['/', '\\']);
    let cleaned: String = trimmed
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || character == '.' || character == '_' {
                character
            } else {
                '-'
            }
        })
        .collect();

    let start = cleaned.len().saturating_sub(MAX_SLUG_LENGTH);
    let slug = cleaned[start..].trim_matches(['-', '.']);

    if slug.is_empty() {
        "repository".to_owned()
    } else {
        slug.to_owned()
    }
}

/// Computes the 64-bit FNV-1a hash of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_url_classification() {
        let cases = [
            ("file:///srv/git/accounts.git", true),
            ("https://git.example.org/it/accounts.git", true),
            ("ssh://git@git.example.org/it/accounts.git", true),
            ("git@git.example.org:it/accounts.git", true),
            ("/srv/git/accounts", false),
            ("relative/accounts", false),
            ("./dir:name", false),
            ("accounts", false),
        ];

        for (url, expected) in cases {
            assert_eq!(is_remote_url(url), expected, "url {url}");
        }
    }

    #[test]
    fn redact_url_removes_user_information() {
        let cases = [
            (
                "https://token@git.example.org/accounts.git",
                "https://git.example.org/accounts.git",
            ),
            (
                "https://user:secret@git.example.org/accounts.git",
                "https://git.example.org/accounts.git",
            ),
            (
                "ssh://git@git.example.org/accounts.git",
                "ssh://git.example.org/accounts.git",
            ),
            (
                "https://git.example.org/a@b.git",
                "https://git.example.org/a@b.git",
            ),
            (
                "git@git.example.org:accounts.git",
                "git@git.example.org:accounts.git",
            ),
            ("/srv/git/accounts", "/srv/git/accounts"),
        ];

        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "url {url}");
        }
    }

    #[test]
    fn cache_name_ignores_token() {
        let with_token = cache_directory_name("https://token@git.example.org/it/accounts.git");
        let without = cache_directory_name("https://git.example.org/it/accounts.git");

        assert_eq!(with_token, without);
        assert!(!with_token.contains("token"), "name {with_token}");
        assert!(
            with_token.starts_with("git.example.org-it-accounts.git-"),
            "name {with_token}"
        );
    }

    #[test]
    fn cache_name_differs_per_url() {
        let first = cache_directory_name("file:///srv/a/accounts.git");
        let second = cache_directory_name("file:///srv/b/accounts.git");

        assert_ne!(first, second);
    }

    #[test]
    fn cache_name_is_a_single_path_component() {
        let name = cache_directory_name("file:///../../etc/accounts/");

        assert!(!name.contains('/'), "name {name}");
        assert!(!name.starts_with('.'), "name {name}");
    }

    #[test]
    fn state_file_name_differs_per_branch() {
        let main = state_file_name("/srv/git/accounts", "main");
        let test = state_file_name("/srv/git/accounts", "test");

        assert_ne!(main, test);
        assert!(main.ends_with(".json"), "name {main}");
        assert!(!main.contains('/'), "name {main}");
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        // Expected values computed with an independent FNV-1a implementation.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
