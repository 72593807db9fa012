//! Authentication of push webhooks from GitHub and GitLab.
//!
//! GitHub signs the body: `X-Hub-Signature-256: sha256=<hex>` is the HMAC-SHA256 of the raw
//! body with the shared secret. GitLab sends the secret itself in `X-Gitlab-Token`. Both are
//! compared in constant time, and neither the secret nor the received value is ever logged or
//! returned.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Environment variable that contains the webhook secret.
pub const SECRET_ENV: &str = "ADGANG_WEBHOOK_SECRET";
/// Environment variable that contains the path of a file with the webhook secret.
pub const SECRET_FILE_ENV: &str = "ADGANG_WEBHOOK_SECRET_FILE";

const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
const GITHUB_EVENT: &str = "x-github-event";
const GITLAB_TOKEN: &str = "x-gitlab-token";
const GITLAB_EVENT: &str = "x-gitlab-event";

/// The secret shared with the git host. Its `Debug` output is redacted.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// A webhook secret that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both variables are set, so it is unclear which secret the git host uses.
    #[error("both {SECRET_ENV} and {SECRET_FILE_ENV} are set; unset one of them")]
    BothSet,
    /// The secret file could not be read.
    #[error(
        "failed to read the webhook secret from {} (set by {SECRET_FILE_ENV}): {source}",
        path.display()
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The variable or file is empty, which would accept any request signed with an empty key.
    #[error("the webhook secret in {origin} is empty; set a random secret of at least 16 bytes")]
    Empty { origin: String },
}

impl WebhookSecret {
    /// Creates a secret from bytes, rejecting an empty one.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(SecretError::Empty {
                origin: "the configuration".to_owned(),
            });
        }
        Ok(Self(secret))
    }

    /// Reads the secret from `ADGANG_WEBHOOK_SECRET`, or from the file that
    /// `ADGANG_WEBHOOK_SECRET_FILE` names. Returns `None` when neither is set, which disables
    /// the webhook receiver.
    pub fn from_env() -> Result<Option<Self>, SecretError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Reads the secret like [`WebhookSecret::from_env`], with `lookup` in place of the
    /// process environment. Trailing whitespace in the file, such as the newline that `echo`
    /// writes, is not part of the secret.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Option<Self>, SecretError> {
        match (lookup(SECRET_ENV), lookup(SECRET_FILE_ENV)) {
            (Some(_), Some(_)) => Err(SecretError::BothSet),
            (None, None) => Ok(None),
            (Some(value), None) => {
                let bytes = value.into_encoded_bytes();
                if bytes.is_empty() {
                    return Err(SecretError::Empty {
                        origin: SECRET_ENV.to_owned(),
                    });
                }
                Ok(Some(Self(bytes)))
            }
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                let mut bytes = std::fs::read(&path).map_err(|source| SecretError::Read {
                    path: path.clone(),
                    source,
                })?;
                let length = bytes.trim_ascii_end().len();
                bytes.truncate(length);
                if bytes.is_empty() {
                    return Err(SecretError::Empty {
                        origin: path.display().to_string(),
                    });
                }
                Ok(Some(Self(bytes)))
            }
        }
    }
}

/// Why a webhook request was not authenticated. The reason is logged, and the 401 response
/// is the same for every reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The request has no signature or token header.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// The signature header is not `sha256=` followed by 64 hex digits.
    #[error("the {0} header is not sha256=<64 hex digits>")]
    MalformedSignature(&'static str),
    /// The signature does not match the body and the secret.
    #[error("the signature does not match the body")]
    WrongSignature,
    /// The token is not the secret.
    #[error("the token does not match the secret")]
    WrongToken,
}

/// Kind of an authenticated event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A push to a branch, which triggers a sync.
    Push,
    /// Any other event, such as GitHub's `ping` when a webhook is created.
    Other,
}

/// Checks GitHub's `X-Hub-Signature-256` against the raw body, and returns the event kind
/// from `X-GitHub-Event`.
pub fn verify_github(
    secret: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Event, Rejection> {
    let header = headers
        .get(GITHUB_SIGNATURE)
        .ok_or(Rejection::MissingHeader(GITHUB_SIGNATURE))?;
    let signature = header
        .as_bytes()
        .strip_prefix(b"sha256=")
        .and_then(|hex_digits| hex::decode(hex_digits).ok())
        .filter(|bytes| bytes.len() == 32)
        .ok_or(Rejection::MalformedSignature(GITHUB_SIGNATURE))?;

    let mut mac =
        Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC-SHA256 accepts a key of any length");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| Rejection::WrongSignature)?;

    let event = match headers.get(GITHUB_EVENT).map(|v| v.as_bytes()) {
        Some(b"push") => Event::Push,
        _ => Event::Other,
    };
    Ok(event)
}

/// Checks GitLab's `X-Gitlab-Token` against the secret, and returns the event kind from
/// `X-Gitlab-Event`.
pub fn verify_gitlab(secret: &WebhookSecret, headers: &HeaderMap) -> Result<Event, Rejection> {
    let token = headers
        .get(GITLAB_TOKEN)
        .ok_or(Rejection::MissingHeader(GITLAB_TOKEN))?;

    // Comparing the digests in constant time also hides the secret's length, which a direct
    // comparison of slices of different lengths would reveal.
    let expected = Sha256::digest(&secret.0);
    let received = Sha256::digest(token.as_bytes());
    if !bool::from(expected.ct_eq(&received)) {
        return Err(Rejection::WrongToken);
    }

    let event = match headers.get(GITLAB_EVENT).map(|v| v.as_bytes()) {
        Some(b"Push Hook") => Event::Push,
        _ => Event::Other,
    };
    Ok(event)
}

/// Returns the `X-Hub-Signature-256` value that GitHub sends for `body`, for tests and tools.
pub fn github_signature(secret: &WebhookSecret, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC-SHA256 accepts a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use http::HeaderValue;

    use super::*;

    fn secret() -> WebhookSecret {
        WebhookSecret::new("It's a Secret to Everybody").unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn github_known_signature_verifies() {
        // printf 'Hello, World!' | openssl dgst -sha256 -hmac "It's a Secret to Everybody"
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let headers = headers(&[(GITHUB_SIGNATURE, signature), (GITHUB_EVENT, "push")]);

        let event = verify_github(&secret(), &headers, b"Hello, World!");

        assert_eq!(event, Ok(Event::Push));
    }

    #[test]
    fn github_rejections() {
        let body = b"{}";
        let good = github_signature(&secret(), body);
        let other = github_signature(&WebhookSecret::new("other").unwrap(), body);
        let cases: [(&[(&'static str, &str)], Rejection); 5] = [
            (&[], Rejection::MissingHeader(GITHUB_SIGNATURE)),
            (
                &[(GITHUB_SIGNATURE, &good[7..])],
                Rejection::MalformedSignature(GITHUB_SIGNATURE),
            ),
            (
                &[(GITHUB_SIGNATURE, "sha256=zz")],
                Rejection::MalformedSignature(GITHUB_SIGNATURE),
            ),
            (
                &[(GITHUB_SIGNATURE, "sha256=abcd")],
                Rejection::MalformedSignature(GITHUB_SIGNATURE),
            ),
            (&[(GITHUB_SIGNATURE, &other)], Rejection::WrongSignature),
        ];

        for (pairs, expected) in cases {
            let result = verify_github(&secret(), &headers(pairs), body);
            assert_eq!(result, Err(expected), "headers {pairs:?}");
        }
    }

    #[test]
    fn github_ping_not_push() {
        let body = b"{\"zen\":\"Keep it logically awesome.\"}";
        let signature = github_signature(&secret(), body);
        let headers = headers(&[(GITHUB_SIGNATURE, &signature), (GITHUB_EVENT, "ping")]);

        assert_eq!(verify_github(&secret(), &headers, body), Ok(Event::Other));
    }

    #[test]
    fn gitlab_token_checked() {
        let token = "It's a Secret to Everybody";
        let push = headers(&[(GITLAB_TOKEN, token), (GITLAB_EVENT, "Push Hook")]);
        let tag = headers(&[(GITLAB_TOKEN, token), (GITLAB_EVENT, "Tag Push Hook")]);
        let wrong = headers(&[(GITLAB_TOKEN, "It's a Secret to Everybod")]);

        assert_eq!(verify_gitlab(&secret(), &push), Ok(Event::Push));
        assert_eq!(verify_gitlab(&secret(), &tag), Ok(Event::Other));
        assert_eq!(verify_gitlab(&secret(), &wrong), Err(Rejection::WrongToken));
        assert_eq!(
            verify_gitlab(&secret(), &HeaderMap::new()),
            Err(Rejection::MissingHeader(GITLAB_TOKEN))
        );
    }

    #[test]
    fn secret_debug_redacted() {
        assert_eq!(format!("{:?}", secret()), "WebhookSecret(<redacted>)");
    }

    #[test]
    fn secret_read_from_variable_or_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"from-file\n").unwrap();
        let path = file.path().as_os_str().to_owned();
        let empty = tempfile::NamedTempFile::new().unwrap();
        let empty_path = empty.path().as_os_str().to_owned();

        let read = |vars: &[(&str, OsString)]| {
            let vars: HashMap<String, OsString> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            WebhookSecret::from_lookup(|name| vars.get(name).cloned())
        };

        assert!(read(&[]).unwrap().is_none());
        assert_eq!(
            read(&[(SECRET_ENV, "direct".into())]).unwrap().unwrap().0,
            b"direct"
        );
        assert_eq!(
            read(&[(SECRET_FILE_ENV, path.clone())]).unwrap().unwrap().0,
            b"from-file"
        );
        assert!(matches!(
            read(&[(SECRET_ENV, "direct".into()), (SECRET_FILE_ENV, path)]),
            Err(SecretError::BothSet)
        ));
        assert!(matches!(
            read(&[(SECRET_ENV, "".into())]),
            Err(SecretError::Empty { .. })
        ));
        assert!(matches!(
            read(&[(SECRET_FILE_ENV, empty_path)]),
            Err(SecretError::Empty { .. })
        ));
        assert!(matches!(
            read(&[(SECRET_FILE_ENV, "/nonexistent/adgang-secret".into())]),
            Err(SecretError::Read { .. })
        ));
    }
}
