//! Readiness checks that the caller registers, so that the server reports `/readyz` without
//! depending on LDAP or Kubernetes.
//!
//! `adgang sync --interval` registers a check that the directory accepts a connection and a
//! bind. The controller is meant to add one for the API server. A check is any async closure returning `Result<(), CheckError>`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tracing::{debug, info, warn};

/// Error of a failed readiness check. It is logged, never sent in a response.
pub type CheckError = Box<dyn std::error::Error + Send + Sync>;

/// Future returned by a readiness check.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send>>;

/// A check that something the process needs is reachable.
pub trait ReadinessCheck: Send + Sync + 'static {
    /// Runs the check once. The server bounds it with a timeout.
    fn check(&self) -> CheckFuture;
}

impl<F, Fut> ReadinessCheck for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), CheckError>> + Send + 'static,
{
    fn check(&self) -> CheckFuture {
        Box::pin(self())
    }
}

struct RegisteredCheck {
    name: String,
    check: Box<dyn ReadinessCheck>,
    /// True after the last run failed, so that only a change of state is logged above debug.
    failing: AtomicBool,
}

/// The registered readiness checks. Clones share the same list, so the caller can register a
/// check after the server has started, for example once a Kubernetes client exists.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<Vec<Arc<RegisteredCheck>>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("checks", &self.names())
            .finish()
    }
}

impl Readiness {
    /// Creates an empty list. With no check registered the process is ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check under `name`, which `/readyz` lists when the check fails.
    pub fn register(&self, name: impl Into<String>, check: impl ReadinessCheck) {
        let registered = Arc::new(RegisteredCheck {
            name: name.into(),
            check: Box::new(check),
            failing: AtomicBool::new(false),
        });
        self.checks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(registered);
    }

    /// Returns the names of the registered checks, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.snapshot().iter().map(|c| c.name.clone()).collect()
    }

    /// Runs every check concurrently, each bounded by `timeout`, and returns the names of the
    /// checks that failed or timed out, in registration order.
    pub async fn failing_checks(&self, timeout: Duration) -> Vec<String> {
        let checks = self.snapshot();
        let runs = checks.iter().map(|c| run_check(c, timeout));
        let results = futures::future::join_all(runs).await;

        checks
            .iter()
            .zip(results)
            .filter(|(_, passed)| !passed)
            .map(|(check, _)| check.name.clone())
            .collect()
    }

    fn snapshot(&self) -> Vec<Arc<RegisteredCheck>> {
        self.checks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Runs one check and logs its failure at warn only when it starts failing, because `/readyz`
/// is polled every few seconds.
async fn run_check(check: &RegisteredCheck, timeout: Duration) -> bool {
    let error = match tokio::time::timeout(timeout, check.check.check()).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!("timed out after {} ms", timeout.as_millis())),
    };

    let was_failing = check.failing.swap(error.is_some(), Ordering::Relaxed);
    match (&error, was_failing) {
        (Some(error), false) => warn!(check = %check.name, %error, "readiness check failed"),
        (Some(error), true) => debug!(check = %check.name, %error, "readiness check still fails"),
        (None, true) => info!(check = %check.name, "readiness check passes again"),
        (None, false) => {}
    }
    error.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_checks_ready() {
        let readiness = Readiness::new();

        assert!(
            readiness
                .failing_checks(Duration::from_secs(1))
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn failing_and_slow_checks_listed() {
        let readiness = Readiness::new();
        readiness.register("directory", || async { Ok(()) });
        readiness.register("api-server", || async { Err("connection refused".into()) });
        readiness.register("slow", || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });

        let failing = readiness.failing_checks(Duration::from_millis(50)).await;

        assert_eq!(failing, ["api-server", "slow"]);
    }
}
