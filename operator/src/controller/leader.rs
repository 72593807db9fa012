//! Leader election with a `coordination.k8s.io/v1` Lease in the controller's namespace, so
//! that of several replicas only one writes to AD and to the API server at a time.
//!
//! kube 5 has no leader election of its own. `kube-leader-election` 0.44 depends on kube 4.
//! `kube-lease-manager` 0.13 fits kube 5 but drives its state with randomised wall-clock
//! sleeps, which a test cannot step through. The protocol is small, so this module
//! implements it on `Api<Lease>`. Every write is a create or a replace that carries the
//! `resourceVersion` that was read, so of two replicas that race, the API server accepts one
//! and rejects the other with 409 Conflict.
//!
//! Timing: the leader renews every `renew_interval` and gives each attempt at most
//! `renew_interval`. A failed, rejected or timed-out renewal sets the `leading` flag to false
//! at once. The flag is therefore false at most two renew intervals after the last successful
//! renewal, which is before the lease expires (`lease_duration`) and another replica may take
//! it over. [`LeaderSettings::with_timing`] enforces `2 * renew_interval < lease_duration`.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Name of the Lease that the replicas compete for.
pub const LEASE_NAME: &str = "adgang-controller";

/// Environment variable with the pod's name, set by the Deployment from `metadata.name`.
pub const POD_NAME_ENV: &str = "POD_NAME";

/// A leader election that cannot start or a Lease request that failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// A request for the Lease failed or the API server rejected it.
    #[error("failed to {action} Lease {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        namespace: String,
        name: String,
        source: Box<kube::Error>,
    },
    /// Neither `POD_NAME` nor the host name gives this replica an identity.
    #[error(
        "no holder identity for the Lease: set {POD_NAME_ENV} (the manifests set it from the \
         pod's metadata.name)"
    )]
    NoIdentity,
    /// The timing would let the flag stay true after the lease expired.
    #[error(
        "invalid leader election timing: renew interval {renew:?} must be less than half the \
         lease duration {lease:?}, and the retry interval {retry:?} more than zero"
    )]
    InvalidTiming {
        lease: Duration,
        renew: Duration,
        retry: Duration,
    },
}

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaderSettings {
    /// Name of the Lease object.
    pub lease_name: String,
    /// `holderIdentity` written by this replica: the pod's name.
    pub identity: String,
    lease_duration: Duration,
    renew_interval: Duration,
    retry_interval: Duration,
}

impl LeaderSettings {
    /// Creates settings with a 15 s lease, renewed every 5 s, and a retry every 2 s by a
    /// replica that does not lead. These are client-go's defaults, except the retry.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            lease_name: LEASE_NAME.to_owned(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            retry_interval: Duration::from_secs(2),
        }
    }

    /// Sets the lease duration, the renew interval of the leader and the retry interval of
    /// the other replicas.
    pub fn with_timing(
        mut self,
        lease: Duration,
        renew: Duration,
        retry: Duration,
    ) -> Result<Self, LeaderError> {
        if renew.is_zero() || retry.is_zero() || renew * 2 >= lease {
            return Err(LeaderError::InvalidTiming {
                lease,
                renew,
                retry,
            });
        }
        self.lease_duration = lease;
        self.renew_interval = renew;
        self.retry_interval = retry;
        Ok(self)
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// Returns this replica's identity: `POD_NAME`, or else the host name, which in a pod is the
/// pod's name too.
pub fn holder_identity() -> Result<String, LeaderError> {
    let from_env = std::env::var(POD_NAME_ENV).ok();
    let from_host = || {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
    };
    from_env
        .or_else(from_host)
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .ok_or(LeaderError::NoIdentity)
}

/// Outcome of one attempt to take or renew the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The lease was free or expired, and this replica now holds it.
    Acquired,
    /// This replica held the lease and renewed it.
    Renewed,
    /// Another replica holds a lease that has not expired.
    HeldByOther,
    /// Another replica changed the Lease between this replica's read and write.
    Conflict,
}

impl Attempt {
    /// Returns true when this replica holds the lease after the attempt.
    pub fn is_leader(self) -> bool {
        matches!(self, Self::Acquired | Self::Renewed)
    }
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    settings: LeaderSettings,
}

impl LeaderElector {
    /// Creates an elector for the Lease in the client's default namespace, which in a pod is
    /// the pod's namespace.
    pub fn new(client: Client, settings: LeaderSettings) -> Self {
        let namespace = client.default_namespace().to_owned();
        Self {
            api: Api::namespaced(client, &namespace),
            namespace,
            settings,
        }
    }

    /// Reads the Lease once and takes, renews or leaves it, judging expiry at `now`.
    pub async fn try_acquire_or_renew(&self, now: DateTime<Utc>) -> Result<Attempt, LeaderError> {
        let name = &self.settings.lease_name;
        let current = self
            .api
            .get_opt(name)
            .await
            .map_err(|source| self.api_error("read", source))?;

        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.held_spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Acquired),
                Err(kube::Error::Api(status)) if status.is_already_exists() => {
                    Ok(Attempt::Conflict)
                }
                Err(source) => Err(self.api_error("create", source)),
            };
        };

        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let (new_spec, outcome) = if holder == Some(self.settings.identity.as_str()) {
            let acquired = spec
                .acquire_time
                .as_ref()
                .map(from_micro_time)
                .unwrap_or(now);
            (self.held_spec(acquired, now, transitions), Attempt::Renewed)
        } else if holder.is_some() && !self.expired(&spec, now) {
            debug!(holder, lease = %name, "the lease is held by another replica");
            return Ok(Attempt::HeldByOther);
        } else {
            let transitions = if holder.is_some() {
                transitions.saturating_add(1)
            } else {
                transitions
            };
            (self.held_spec(now, now, transitions), Attempt::Acquired)
        };

        // The metadata keeps the resourceVersion that was read, so a concurrent change makes
        // the API server reject this replace with 409 Conflict.
        lease.spec = Some(new_spec);
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(outcome),
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(Attempt::Conflict),
            Err(source) => Err(self.api_error("update", source)),
        }
    }

    /// Gives the lease up when this replica holds it, so another replica can take it over
    /// without waiting for it to expire.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let name = &self.settings.lease_name;
        let Some(mut lease) = self
            .api
            .get_opt(name)
            .await
            .map_err(|source| self.api_error("read", source))?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        lease.spec = Some(spec);
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            // Someone else changed the lease, so this replica no longer holds it.
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(()),
            Err(source) => Err(self.api_error("release", source)),
        }
    }

    /// Runs the election in the background until `shutdown` completes, then releases the
    /// lease. The receiver is true while this replica holds the lease. It turns false as
    /// soon as a renewal fails, times out or loses a conflict, and before the release.
    pub fn spawn(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (watch::Receiver<bool>, JoinHandle<()>) {
        let (sender, receiver) = watch::channel(false);
        let handle = tokio::spawn(self.run(sender, shutdown));
        (receiver, handle)
    }

    async fn run(self, leading: watch::Sender<bool>, shutdown: impl Future<Output = ()>) {
        let name = self.settings.lease_name.clone();
        let identity = self.settings.identity.clone();
        info!(lease = %name, namespace = %self.namespace, %identity, "starting leader election");
        tokio::pin!(shutdown);

        loop {
            let started = tokio::time::Instant::now();
            let attempt = tokio::time::timeout(
                self.settings.renew_interval,
                self.try_acquire_or_renew(Utc::now()),
            );
            let is_leader = tokio::select! {
                () = &mut shutdown => break,
                result = attempt => match result {
                    Ok(Ok(attempt)) => attempt.is_leader(),
                    Ok(Err(error)) => {
                        warn!(%error, lease = %name, "leader election request failed");
                        false
                    }
                    Err(_) => {
                        warn!(lease = %name, timeout = ?self.settings.renew_interval, "leader election request timed out");
                        false
                    }
                },
            };

            // Receivers wake only on a change: a renewal that keeps the lease must not start
            // the tasks that wait for `changed()` (the mail round, the user gauges) again.
            let mut was_leader = is_leader;
            leading.send_if_modified(|leading| {
                was_leader = std::mem::replace(leading, is_leader);
                was_leader != is_leader
            });
            match (was_leader, is_leader) {
                (false, true) => info!(lease = %name, %identity, "became the leader"),
                (true, false) => warn!(lease = %name, %identity, "lost the lease; stopped writing"),
                _ => {}
            }

            let interval = if is_leader {
                self.settings.renew_interval
            } else {
                self.settings.retry_interval
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(started + interval) => {}
            }
        }

        let was_leader = leading.send_replace(false);
        if was_leader {
            match self.release().await {
                Ok(()) => info!(lease = %name, %identity, "released the lease"),
                Err(error) => {
                    warn!(%error, lease = %name, "failed to release the lease; it expires on its own")
                }
            }
        }
    }

    fn held_spec(
        &self,
        acquired: DateTime<Utc>,
        now: DateTime<Utc>,
        transitions: i32,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.lease_duration_seconds()),
            acquire_time: Some(to_micro_time(acquired)),
            renew_time: Some(to_micro_time(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Returns true when the holder's last renewal plus its lease duration is not after `now`.
    // NOTE: expiry is judged with this replica's clock against the holder's renewTime.
    // Clocks that differ by more than the lease duration
    // minus two renew intervals (5 s by default) could let two replicas lead at once.
    fn expired(&self, spec: &LeaseSpec, now: DateTime<Utc>) -> bool {
        let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
            return true;
        };
        let seconds = spec
            .lease_duration_seconds
            .unwrap_or(self.settings.lease_duration_seconds());
        from_micro_time(renewed) + TimeDelta::seconds(i64::from(seconds)) <= now
    }

    fn api_error(&self, action: &'static str, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            action,
            namespace: self.namespace.clone(),
            name: self.settings.lease_name.clone(),
            source: Box::new(source),
        }
    }
}

fn to_micro_time(time: DateTime<Utc>) -> MicroTime {
    // jiff covers the years -9999 to 9999, which contains every time a clock returns.
    MicroTime(Timestamp::from_microsecond(time.timestamp_micros()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn from_micro_time(time: &MicroTime) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.0.as_microsecond()).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests;
