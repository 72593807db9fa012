//! A stand-in for the Kubernetes API server: a `tower` service that replays a named
//! scenario of requests and replies in the shapes the real server uses.
//!
//! Each [`Step`] expects one request (method and path) in order and returns its reply.
//! Events (`POST .../events`) are not part of the order, because how many a reconcile
//! publishes depends on what it applied: each is accepted with 201 and recorded for the test
//! to check. A `GET` of one object that matches no step returns the object that the test
//! put with [`ApiServer::put_object`], or 404 Not Found, and is recorded. A reconcile reads
//! its Supplier this way, so the test decides what the server contains. Any other
//! request that matches no step gets a 500 reply with a `Status` object and is recorded as
//! unexpected; [`ApiServer::finish`] fails the test on any unexpected request or unused step.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// The reply of a step to its request.
pub enum Reply {
    /// A fixed status code and JSON body.
    Json(u16, Value),
    /// The object with the `status` of the request's apply patch, and a new
    /// resourceVersion, as a status patch returns it.
    WithPatchedStatus(Value),
}

/// One expected request.
pub struct Step {
    pub name: &'static str,
    pub method: Method,
    pub path: String,
    pub reply: Reply,
}

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

#[derive(Default)]
struct State {
    steps: VecDeque<Step>,
    requests: Vec<(&'static str, Received)>,
    events: Vec<Value>,
    unexpected: Vec<String>,
    /// Objects served to a `GET` outside the steps, by path.
    objects: HashMap<String, Value>,
    /// Paths of the `GET` requests served from `objects` or with 404.
    gets: Vec<String>,
}

/// The scripted server. Clones share the scenario.
#[derive(Clone, Default)]
pub struct ApiServer {
    state: Arc<Mutex<State>>,
}

impl ApiServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds steps to the end of the scenario.
    pub fn expect(&self, steps: impl IntoIterator<Item = Step>) {
        self.state.lock().unwrap().steps.extend(steps);
    }

    /// Returns a client whose requests go to this server, with `adgang` as its default
    /// namespace.
    pub fn client(&self) -> Client {
        let server = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(request).await) }
        });
        Client::new(service, "adgang")
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let received = Received {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            body,
        };

        let mut state = self.state.lock().unwrap();
        if received.method == Method::POST && received.path.ends_with("/events") {
            let mut event = received.body.clone();
            event["metadata"]["uid"] = json!(format!("event-{}", state.events.len()));
            event["metadata"]["resourceVersion"] = json!("1");
            state.events.push(received.body.clone());
            return reply(StatusCode::CREATED, &event);
        }
        if received.method == Method::PATCH && received.path.contains("/events/") {
            state.events.push(received.body.clone());
            return reply(StatusCode::OK, &received.body);
        }

        let matches = state
            .steps
            .front()
            .is_some_and(|s| s.method == received.method && s.path == received.path);
        if !matches && received.method == Method::GET && !received.query.contains("watch") {
            state.gets.push(received.path.clone());
            return match state.objects.get(&received.path) {
                Some(object) => reply(StatusCode::OK, object),
                None => {
                    let status = json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "message": format!("{} not found", received.path),
                        "reason": "NotFound", "code": 404
                    });
                    reply(StatusCode::NOT_FOUND, &status)
                }
            };
        }
        if !matches {
            let expected = state
                .steps
                .front()
                .map(|s| format!("{} ({} {})", s.name, s.method, s.path))
                .unwrap_or_else(|| "no further request".to_owned());
            let message = format!(
                "unexpected {} {} (expected {expected})",
                received.method, received.path
            );
            state.unexpected.push(message.clone());
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": message, "reason": "InternalError", "code": 500
            });
            return reply(StatusCode::INTERNAL_SERVER_ERROR, &status);
        }

        let step = state.steps.pop_front().expect("a step matched");
        let response = match &step.reply {
            Reply::Json(code, value) => reply(StatusCode::from_u16(*code).unwrap(), value),
            Reply::WithPatchedStatus(object) => {
                let mut object = object.clone();
                object["status"] = received.body["status"].clone();
                let version = object["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                object["metadata"]["resourceVersion"] = json!((version + 1).to_string());
                reply(StatusCode::OK, &object)
            }
        };
        state.requests.push((step.name, received));
        response
    }

    /// Serves `object` of the collection `plural` to a `GET` outside the steps, replacing
    /// what that path served before.
    pub fn put_object(&self, plural: &str, object: &Value) {
        let name = object["metadata"]["name"].as_str().unwrap();
        let path = object_path(plural, name);
        self.state
            .lock()
            .unwrap()
            .objects
            .insert(path, object.clone());
    }

    /// Returns the paths of the `GET` requests that were served outside the steps.
    pub fn gets(&self) -> Vec<String> {
        self.state.lock().unwrap().gets.clone()
    }

    /// Returns the requests that matched steps, with the names of the steps.
    pub fn requests(&self) -> Vec<(&'static str, Received)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Returns the body of the request that matched the step `name`.
    pub fn body_of(&self, name: &str) -> Value {
        self.requests()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r.body)
            .unwrap_or_else(|| panic!("no request matched step {name:?}"))
    }

    /// Returns the reasons of the events published so far, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Returns the events published so far.
    pub fn events(&self) -> Vec<Value> {
        self.state.lock().unwrap().events.clone()
    }

    /// Forgets the events, matched requests and served `GET` requests, keeping the
    /// remaining steps and the served objects.
    pub fn clear(&self) {
        let mut state = self.state.lock().unwrap();
        state.events.clear();
        state.requests.clear();
        state.gets.clear();
    }

    /// Fails when a request matched no step or a step was not used.
    pub fn finish(&self) {
        let state = self.state.lock().unwrap();
        assert!(
            state.unexpected.is_empty(),
            "unexpected requests: {:?}",
            state.unexpected
        );
        let left: Vec<&str> = state.steps.iter().map(|s| s.name).collect();
        assert!(left.is_empty(), "steps never requested: {left:?}");
    }
}

fn reply(code: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

/// Path of a namespaced object of the Adgang API group in namespace `adgang`.
pub fn object_path(plural: &str, name: &str) -> String {
    format!("/apis/adgang.example.org/v1alpha1/namespaces/adgang/{plural}/{name}")
}

/// Returns a step that replies to the status patch of an object with the object and its new status.
pub fn status_patch(name: &'static str, plural: &str, object: &Value) -> Step {
    let object_name = object["metadata"]["name"].as_str().unwrap();
    Step {
        name,
        method: Method::PATCH,
        path: format!("{}/status", object_path(plural, object_name)),
        reply: Reply::WithPatchedStatus(object.clone()),
    }
}

/// Returns a step that replies to a JSON patch of an object's finalizers with the object as it then is.
pub fn finalizer_patch(name: &'static str, plural: &str, after: &Value) -> Step {
    let object_name = after["metadata"]["name"].as_str().unwrap();
    Step {
        name,
        method: Method::PATCH,
        path: object_path(plural, object_name),
        reply: Reply::Json(200, after.clone()),
    }
}

/// One served collection: its path, the kind of its list, its objects, and the delay before
/// a list of it is served.
type Collection = (String, String, Vec<Value>, std::time::Duration);

/// A stand-in for the API server that serves a fixed set of objects to the controllers'
/// watches, for a test of the running controller rather than of one reconcile.
///
/// A list returns the objects of its collection, after the collection's delay. A watch is
/// held open for a minute and then ends without events, as a real watch ends at its timeout.
/// A `GET` of one object returns it. A status patch returns the object with the patched
/// status, a JSON patch returns the object unchanged, and an event is accepted. Every request
/// is recorded.
#[derive(Clone, Default)]
pub struct LiveApiServer {
    collections: Arc<Mutex<Vec<Collection>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl LiveApiServer {
    /// Serves `items` at the collection `plural` of namespace `adgang`, as a list of `kind`.
    pub fn serve(&self, plural: &str, kind: &str, items: Vec<Value>) {
        self.serve_slowly(plural, kind, items, std::time::Duration::ZERO);
    }

    /// Serves `items` like [`LiveApiServer::serve`], but serves each list after `delay`, as
    /// a busy API server can be slow with a large list.
    pub fn serve_slowly(
        &self,
        plural: &str,
        kind: &str,
        items: Vec<Value>,
        delay: std::time::Duration,
    ) {
        let path = format!("/apis/adgang.example.org/v1alpha1/namespaces/adgang/{plural}");
        self.collections
            .lock()
            .unwrap()
            .push((path, format!("{kind}List"), items, delay));
    }

    /// Returns a client whose requests go to this server.
    pub fn client(&self) -> Client {
        let server = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(request).await) }
        });
        Client::new(service, "adgang")
    }

    /// Returns every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        let received = Received {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        self.received.lock().unwrap().push(received.clone());

        if received.path.ends_with("/events") {
            return reply(StatusCode::CREATED, &received.body);
        }
        let collections = self.collections.lock().unwrap().clone();
        for (path, list_kind, items, delay) in collections {
            if received.method == Method::GET && received.path == path {
                if received.query.contains("watch=true") {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    return reply_text(StatusCode::OK, "");
                }
                tokio::time::sleep(delay).await;
                let list = json!({
                    "kind": list_kind,
                    "apiVersion": "adgang.example.org/v1alpha1",
                    "metadata": {"resourceVersion": "1000"},
                    "items": items,
                });
                return reply(StatusCode::OK, &list);
            }
            for item in &items {
                let name = item["metadata"]["name"].as_str().unwrap_or_default();
                let object_path = format!("{path}/{name}");
                if received.method == Method::GET && received.path == object_path {
                    return reply(StatusCode::OK, item);
                }
                if received.method == Method::PATCH && received.path == object_path {
                    return reply(StatusCode::OK, item);
                }
                if received.method == Method::PATCH
                    && received.path == format!("{object_path}/status")
                {
                    let mut object = item.clone();
                    object["status"] = received.body["status"].clone();
                    return reply(StatusCode::OK, &object);
                }
            }
        }
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{} {} not found", received.method, received.path),
            "reason": "NotFound", "code": 404
        });
        reply(StatusCode::NOT_FOUND, &status)
    }
}

fn reply_text(code: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(text.as_bytes().to_vec()))
        .unwrap()
}
