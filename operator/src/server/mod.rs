//! The HTTP server of a long-running Adgang process: `/metrics`, `/healthz`, `/readyz` and
//! the push webhooks that trigger a sync at once.
//!
//! `adgang sync --interval` serves it today, and the controller is meant to serve the same
//! one. Routes:
//!
//! - `GET /metrics`: the [`Metrics`] in the Prometheus text format 0.0.4.
//! - `GET /healthz`: 200 while the process serves requests (liveness).
//! - `GET /readyz`: 200 when every registered [`Readiness`] check passes, otherwise 503 with
//!   the names of the failing checks. The caller registers the checks, so this module does
//!   not depend on LDAP or Kubernetes.
//! - `POST /webhooks/github` and `POST /webhooks/gitlab`: a push event whose signature or
//!   token matches the [`WebhookSecret`] fires the [`SyncTrigger`] and gets 202. Other
//!   authenticated events, such as GitHub's `ping`, get 200 and trigger nothing. A missing or
//!   wrong signature or token gets 401. Without a secret, both routes return 404.
//!
//! The server is built on `hyper` 1 and `hyper-util` directly, without a framework. The
//! `kube` client already brings both into the dependency tree, so the server adds only
//! `httpdate` (for hyper's server side) to the build, and five fixed routes need no router. `hyper`'s HTTP/1 builder also
//! exposes the header read timeout that bounds slow and idle clients, which `axum::serve`
//! (0.8.9) does not.
//!
//! Limits: a request body over [`ServerConfig::max_body_bytes`] gets 413, and a body not
//! received within [`ServerConfig::body_read_timeout`] gets 408. A client that does not send
//! its headers within [`ServerConfig::header_read_timeout`] is disconnected. At most
//! [`ServerConfig::max_connections`] connections are served at once, and further clients wait
//! in the listen backlog. An oversized push is not lost: the next interval sync fetches it.

pub mod metrics;
mod readiness;
mod report;
mod routes;
mod webhook;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, info, warn};

pub use metrics::{
    CONTENT_TYPE, MailFailureKind, Metrics, ReconcileResult, WebhookResult, WebhookSource,
};
pub use readiness::{CheckError, CheckFuture, Readiness, ReadinessCheck};
pub use report::{ENDING_SOON_DAYS, UserCounts, count_users};
pub use webhook::{
    Event, Rejection, SECRET_ENV, SECRET_FILE_ENV, SecretError, WebhookSecret, github_signature,
    verify_github, verify_gitlab,
};

/// Address the server listens on unless the caller chooses another: loopback only, so that
/// exposing the webhooks is a deliberate choice.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Time that open connections get to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after a failed `accept`, such as when the process is out of file descriptors, so that
/// the loop does not spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Settings of the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Secret shared with the git host; `None` disables the webhook routes.
    pub webhook_secret: Option<WebhookSecret>,
    /// Maximum size of a request body in bytes.
    pub max_body_bytes: usize,
    /// Time a client has to send the request line and headers, also while a kept-alive
    /// connection is idle.
    pub header_read_timeout: Duration,
    /// Time a client has to send the request body.
    pub body_read_timeout: Duration,
    /// Time each readiness check has before it counts as failed.
    pub readiness_timeout: Duration,
    /// Maximum number of connections served at once.
    pub max_connections: usize,
}

impl ServerConfig {
    /// Creates settings for `listen` with the default limits: 1 MiB bodies, 10 s to send
    /// headers or a body, 5 s per readiness check and 64 connections.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            webhook_secret: None,
            max_body_bytes: 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            readiness_timeout: Duration::from_secs(5),
            max_connections: 64,
        }
    }
}

/// A server that could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is in use, not local, or not allowed.
    #[error("failed to listen on {address}: {source}; choose another address with --listen")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A request for an immediate sync, fired by an accepted push webhook.
///
/// Requests coalesce: pushes that arrive while no task waits leave one pending request, so a
/// burst of pushes during a sync causes exactly one more sync right after it.
#[derive(Clone, Debug, Default)]
pub struct SyncTrigger(Arc<Notify>);

impl SyncTrigger {
    /// Creates a trigger with no pending request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests a sync.
    pub fn fire(&self) {
        self.0.notify_one();
    }

    /// Waits until a sync is requested, returning at once for a pending request.
    pub async fn fired(&self) {
        self.0.notified().await;
    }
}

/// Shared state of the request handlers.
struct State {
    config: ServerConfig,
    metrics: Metrics,
    readiness: Readiness,
    trigger: SyncTrigger,
    rejections: routes::RejectionLog,
}

/// A bound server, ready to [`serve`](Server::serve).
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
}

impl Server {
    /// Binds the listening socket, so that a wrong address fails here, before the caller
    /// starts its work.
    pub async fn bind(
        config: ServerConfig,
        metrics: Metrics,
        readiness: Readiness,
        trigger: SyncTrigger,
    ) -> Result<Self, ServerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    address: config.listen,
                    source,
                })?;
        let state = Arc::new(State {
            config,
            metrics,
            readiness,
            trigger,
            rejections: routes::RejectionLog::default(),
        });
        Ok(Self { listener, state })
    }

    /// Returns the address the server listens on, with the port chosen for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.config.listen)
    }

    /// Serves requests until `shutdown` completes, then gives open connections a few seconds
    /// to finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let address = self.local_addr();
        let webhooks = self.state.config.webhook_secret.is_some();
        info!(%address, webhooks, "serving metrics, health and webhooks");

        let connections = Arc::new(Semaphore::new(self.state.config.max_connections.max(1)));
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);

        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = connections.clone().acquire_owned() => permit,
            };
            // The semaphore is never closed.
            let Ok(permit) = permit else { break };

            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        warn!(%error, "failed to accept a connection; retrying");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                        continue;
                    }
                },
            };

            let state = self.state.clone();
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(routes::handle(&state, request, peer).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.state.config.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    debug!(%peer, %error, "connection closed with an error");
                }
                drop(permit);
            });
        }

        info!(%address, "stopping the HTTP server");
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            warn!(%address, "closing connections that did not finish in time");
        }
    }
}
