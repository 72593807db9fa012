//! A `tower` service that replaces the Kubernetes API server in tests. It replays a
//! script of replies in the shapes the API server sends and records each request, so a test
//! can check both what the code sent and how it handled each reply.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use kube::Client;
use serde_json::{Value, json};

/// One expected request and the reply to it.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: Method,
    /// Expected path, compared without the query string.
    pub path: String,
    pub status: u16,
    pub body: Value,
}

impl Exchange {
    pub fn new(method: Method, path: &str, status: u16, body: Value) -> Self {
        Self {
            method,
            path: path.to_owned(),
            status,
            body,
        }
    }
}

/// A request as the mock received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub content_type: Option<String>,
    /// The body parsed as JSON, or `Value::Null` when it was empty.
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Exchange>,
    requests: Vec<Recorded>,
    mismatches: Vec<String>,
}

/// The recorded side of a mock API server.
#[derive(Clone)]
pub struct MockApi {
    shared: Arc<Mutex<Shared>>,
}

impl MockApi {
    /// Creates a client in namespace `namespace` whose requests get the replies of `script`,
    /// in order.
    pub fn start(namespace: &str, script: Vec<Exchange>) -> (Client, MockApi) {
        let shared = Arc::new(Mutex::new(Shared {
            script: script.into(),
            ..Shared::default()
        }));
        let mock = MockApi {
            shared: shared.clone(),
        };
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(reply(&shared, request).await) }
        });
        (Client::new(service, namespace), mock)
    }

    /// Returns the requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Panics when a request did not match the script or a scripted reply was not used.
    pub fn assert_done(&self) {
        let shared = self.shared.lock().unwrap();
        assert!(
            shared.mismatches.is_empty(),
            "unexpected requests: {:#?}",
            shared.mismatches
        );
        assert!(
            shared.script.is_empty(),
            "requests not received: {:#?}",
            shared.script
        );
    }
}

async fn reply(
    shared: &Mutex<Shared>,
    request: Request<kube::client::Body>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    let uri = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.clone(),
        uri: uri.clone(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    };

    let mut shared = shared.lock().unwrap();
    shared.requests.push(recorded);
    let expected = shared.script.pop_front();
    let (status, body) = match expected {
        Some(exchange) if exchange.method == parts.method && exchange.path == parts.uri.path() => {
            (exchange.status, exchange.body)
        }
        other => {
            shared
                .mismatches
                .push(format!("{} {uri}, expected {other:?}", parts.method));
            (
                500,
                status_body(500, "InternalError", "request not in the test's script"),
            )
        }
    };
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Returns a `Status` object as the API server sends with an error.
pub fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// Returns the `Status` that the API server sends when an object is not found.
pub fn not_found(resource: &str, name: &str) -> Value {
    let mut body = status_body(404, "NotFound", &format!("{resource} {name:?} not found"));
    body["details"] = details(resource, name);
    body
}

/// Returns the `Status` that the API server sends when an update's resourceVersion is stale.
pub fn conflict(resource: &str, name: &str) -> Value {
    let mut body = status_body(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {resource} {name:?}: the object has been \
             modified; please apply your changes to the latest version and try again"
        ),
    );
    body["details"] = details(resource, name);
    body
}

/// Returns the `Status` that the API server sends when a created object already exists.
pub fn already_exists(resource: &str, name: &str) -> Value {
    let mut body = status_body(
        409,
        "AlreadyExists",
        &format!("{resource} {name:?} already exists"),
    );
    body["details"] = details(resource, name);
    body
}

fn details(resource: &str, name: &str) -> Value {
    let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
    json!({ "name": name, "group": group, "kind": kind })
}
