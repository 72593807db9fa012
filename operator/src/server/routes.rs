//! Request handling: one function per route, and the plain-text responses they send.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use tracing::{info, warn};

use super::State;
use super::metrics::{WebhookResult, WebhookSource};
use super::webhook::{self, Event, Rejection, WebhookSecret};

const TEXT: &str = "text/plain; charset=utf-8";

/// Minimum time between two warnings about rejected webhook requests, so that a client
/// sending bad requests in a loop cannot flood the log. The metric counts every rejection.
const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Routes a request and builds its response. Every outcome is a response, so the connection
/// task never receives a handler error.
pub(super) async fn handle(
    state: &State,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let method = request.method();
    let read_only = method == Method::GET || method == Method::HEAD;

    match path {
        "/healthz" if read_only => text(StatusCode::OK, "ok\n"),
        "/readyz" if read_only => readyz(state).await,
        "/metrics" if read_only => {
            let mut response = text(StatusCode::OK, state.metrics.encode());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(super::metrics::CONTENT_TYPE),
            );
            response
        }
        "/healthz" | "/readyz" | "/metrics" => method_not_allowed("GET, HEAD"),
        "/webhooks/github" | "/webhooks/gitlab" if method != Method::POST => {
            method_not_allowed("POST")
        }
        "/webhooks/github" => webhook(state, WebhookSource::GitHub, request, peer).await,
        "/webhooks/gitlab" => webhook(state, WebhookSource::GitLab, request, peer).await,
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn readyz(state: &State) -> Response<Full<Bytes>> {
    let failing = state
        .readiness
        .failing_checks(state.config.readiness_timeout)
        .await;
    if failing.is_empty() {
        text(StatusCode::OK, "ready\n")
    } else {
        let body = format!("not ready: failing checks: {}\n", failing.join(", "));
        text(StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

/// Authenticates a webhook request and fires the sync trigger for a push. The 401 response is
/// the same for every authentication failure and contains no secret, signature or token.
async fn webhook(
    state: &State,
    source: WebhookSource,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let Some(secret) = &state.config.webhook_secret else {
        return text(
            StatusCode::NOT_FOUND,
            "webhooks are disabled: the server has no webhook secret\n",
        );
    };

    let (parts, body) = request.into_parts();
    let declared_length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = state.config.max_body_bytes;
    let body = match declared_length {
        Some(length) if length > limit as u64 => Err(BodyError::TooLarge),
        _ => read_body(body, limit, state.config.body_read_timeout).await,
    };
    let body = match body {
        Ok(body) => body,
        Err(error) => {
            state
                .metrics
                .record_webhook(source, WebhookResult::Rejected);
            state.rejections.warn(source, peer, &error.to_string());
            return match error {
                BodyError::TooLarge => text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is larger than {limit} bytes\n"),
                ),
                BodyError::TimedOut => text(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body was not received in time\n",
                ),
                BodyError::Read(_) => text(StatusCode::BAD_REQUEST, "failed to read the body\n"),
            };
        }
    };

    match authenticate(secret, source, &parts.headers, &body) {
        Ok(Event::Push) => {
            state
                .metrics
                .record_webhook(source, WebhookResult::Accepted);
            info!(source = source.as_str(), %peer, "push event received; triggering a sync");
            state.trigger.fire();
            text(StatusCode::ACCEPTED, "accepted: sync triggered\n")
        }
        Ok(Event::Other) => {
            state.metrics.record_webhook(source, WebhookResult::Ignored);
            info!(source = source.as_str(), %peer, "ignoring an event that is not a push");
            text(StatusCode::OK, "ignored: not a push event\n")
        }
        Err(rejection) => {
            state
                .metrics
                .record_webhook(source, WebhookResult::Rejected);
            state.rejections.warn(source, peer, &rejection.to_string());
            text(
                StatusCode::UNAUTHORIZED,
                "unauthorized: the signature or token is missing or invalid\n",
            )
        }
    }
}

fn authenticate(
    secret: &WebhookSecret,
    source: WebhookSource,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Event, Rejection> {
    match source {
        WebhookSource::GitHub => webhook::verify_github(secret, headers, body),
        WebhookSource::GitLab => webhook::verify_gitlab(secret, headers),
    }
}

/// A request body that could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    /// The body is larger than the limit.
    #[error("the request body is larger than the limit")]
    TooLarge,
    /// The client did not send the whole body in time.
    #[error("the request body was not received in time")]
    TimedOut,
    /// The connection failed while reading the body.
    #[error("failed to read the request body: {0}")]
    Read(Box<dyn std::error::Error + Send + Sync>),
}

async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| BodyError::TimedOut)?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Err(error) => Err(BodyError::Read(error)),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT));
    response
}

fn method_not_allowed(allowed: &'static str) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    response
}

/// Rate limit for the warnings about rejected webhook requests.
#[derive(Default)]
pub(super) struct RejectionLog {
    /// When the last warning was logged, and how many rejections were not logged since.
    last: Mutex<Option<(Instant, u64)>>,
}

impl RejectionLog {
    /// Logs a rejection with its reason, at most once per [`REJECTION_LOG_INTERVAL`], with
    /// the number of rejections left out since the previous warning.
    pub(super) fn warn(&self, source: WebhookSource, peer: SocketAddr, reason: &str) {
        let Some(not_logged) = self.take_turn(Instant::now()) else {
            return;
        };
        warn!(
            source = source.as_str(),
            %peer,
            reason,
            not_logged_before = not_logged,
            "rejected a webhook request"
        );
    }

    /// Returns the number of rejections left out since the last warning when a warning is due
    /// at `now`, and otherwise counts this rejection as left out and returns `None`.
    fn take_turn(&self, now: Instant) -> Option<u64> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match *last {
            Some((at, not_logged)) if now.duration_since(at) < REJECTION_LOG_INTERVAL => {
                *last = Some((at, not_logged + 1));
                None
            }
            Some((_, not_logged)) => {
                *last = Some((now, 0));
                Some(not_logged)
            }
            None => {
                *last = Some((now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_warnings_rate_limited() {
        let log = RejectionLog::default();
        let start = Instant::now();
        let later = start + REJECTION_LOG_INTERVAL;

        assert_eq!(log.take_turn(start), Some(0));
        assert_eq!(log.take_turn(start + Duration::from_secs(1)), None);
        assert_eq!(log.take_turn(start + Duration::from_secs(59)), None);
        assert_eq!(log.take_turn(later), Some(2));
        assert_eq!(log.take_turn(later + Duration::from_secs(1)), None);
    }
}
