//! The user gauges of the controller: the leader reads AD once per resync interval and sets
//! `adgang_users` and `adgang_users_access_ending_soon` from the accounts it contains.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use chrono_tz::Tz;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::directory::Directory;
use crate::server::{Metrics, count_users};

/// Sets the user gauges from AD at once and then every `interval` while `leading` is true,
/// until `stop` completes. A replica that does not lead removes the gauges, so that only
/// the leader reports them. A failed read leaves the gauges as they are.
pub async fn run_user_gauges<D: Directory>(
    directory: D,
    metrics: Metrics,
    interval: Duration,
    zone: Tz,
    mut leading: watch::Receiver<bool>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let is_leader = *leading.borrow_and_update();
        if is_leader {
            match directory.snapshot(&BTreeSet::new(), &BTreeSet::new()).await {
                Ok(snapshot) => {
                    metrics.set_user_counts(&count_users(&snapshot, Utc::now(), zone));
                    debug!(accounts = snapshot.accounts.len(), "set the user gauges");
                }
                Err(error) => {
                    warn!(%error, "failed to read AD for the user gauges, so they keep their values")
                }
            }
        } else {
            metrics.clear_users();
        }

        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(interval) => {}
            changed = leading.changed() => if changed.is_err() { return },
        }
    }
}
