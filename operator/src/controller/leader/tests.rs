use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::controller::mock_api::{Exchange, MockApi, already_exists, conflict, not_found};

const NAMESPACE: &str = "adgang";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/adgang/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/adgang/leases/adgang-controller";
const RESOURCE: &str = "leases.coordination.k8s.io";
const ME: &str = "adgang-5d8c9f7b6-x2k4p";
const OTHER: &str = "adgang-5d8c9f7b6-q9m7w";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 19, 0, 0).unwrap()
}

fn micro(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A Lease as the API server returns it.
fn lease(holder: &str, renewed: DateTime<Utc>, transitions: i32, resource_version: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "adgang-controller",
            "namespace": NAMESPACE,
            "uid": "0b6f1c1e-8f5a-4c47-9a55-0d3c2f1e7a10",
            "resourceVersion": resource_version,
            "creationTimestamp": "2026-12-01T08:00:00Z",
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": micro(renewed - TimeDelta::minutes(10)),
            "renewTime": micro(renewed),
            "leaseTransitions": transitions,
        },
    })
}

fn elector(script: Vec<Exchange>) -> (LeaderElector, MockApi) {
    let (client, mock) = MockApi::start(NAMESPACE, script);
    (LeaderElector::new(client, LeaderSettings::new(ME)), mock)
}

#[tokio::test]
async fn free_lease_created() {
    let created = lease(ME, now(), 0, "101");
    let (elector, mock) = elector(vec![
        Exchange::new(Method::GET, LEASE, 404, not_found(RESOURCE, LEASE_NAME)),
        Exchange::new(Method::POST, LEASES, 201, created),
    ]);

    let attempt = elector.try_acquire_or_renew(now()).await.unwrap();

    assert_eq!(attempt, Attempt::Acquired);
    mock.assert_done();
    let sent = &mock.requests()[1].body;
    assert_eq!(sent["metadata"]["name"], "adgang-controller");
    assert_eq!(sent["spec"]["holderIdentity"], ME);
    assert_eq!(sent["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(sent["spec"]["renewTime"], micro(now()));
    assert_eq!(sent["spec"]["leaseTransitions"], 0);
}

#[tokio::test]
async fn lease_held_by_other_waits() {
    let renewed = now() - TimeDelta::seconds(14);
    let (elector, mock) = elector(vec![Exchange::new(
        Method::GET,
        LEASE,
        200,
        lease(OTHER, renewed, 3, "200"),
    )]);

    let attempt = elector.try_acquire_or_renew(now()).await.unwrap();

    assert_eq!(attempt, Attempt::HeldByOther);
    assert!(!attempt.is_leader());
    mock.assert_done();
    assert_eq!(
        mock.requests().len(),
        1,
        "no write to a lease held by another"
    );
}

#[tokio::test]
async fn expired_lease_taken_over() {
    let renewed = now() - TimeDelta::seconds(15);
    let (elector, mock) = elector(vec![
        Exchange::new(Method::GET, LEASE, 200, lease(OTHER, renewed, 3, "200")),
        Exchange::new(Method::PUT, LEASE, 200, lease(ME, now(), 4, "201")),
    ]);

    let attempt = elector.try_acquire_or_renew(now()).await.unwrap();

    assert_eq!(attempt, Attempt::Acquired);
    mock.assert_done();
    let sent = &mock.requests()[1].body;
    assert_eq!(sent["metadata"]["resourceVersion"], "200");
    assert_eq!(sent["spec"]["holderIdentity"], ME);
    assert_eq!(sent["spec"]["acquireTime"], micro(now()));
    assert_eq!(sent["spec"]["renewTime"], micro(now()));
    assert_eq!(sent["spec"]["leaseTransitions"], 4);
}

#[tokio::test]
async fn held_lease_renewed() {
    let renewed = now() - TimeDelta::seconds(5);
    let acquired = micro(renewed - TimeDelta::minutes(10));
    let (elector, mock) = elector(vec![
        Exchange::new(Method::GET, LEASE, 200, lease(ME, renewed, 2, "300")),
        Exchange::new(Method::PUT, LEASE, 200, lease(ME, now(), 2, "301")),
    ]);

    let attempt = elector.try_acquire_or_renew(now()).await.unwrap();

    assert_eq!(attempt, Attempt::Renewed);
    mock.assert_done();
    let sent = &mock.requests()[1].body;
    assert_eq!(sent["metadata"]["resourceVersion"], "300");
    assert_eq!(sent["spec"]["renewTime"], micro(now()));
    assert_eq!(sent["spec"]["acquireTime"], acquired);
    assert_eq!(sent["spec"]["leaseTransitions"], 2);
}

#[tokio::test]
async fn conflict_on_replace_not_leader() {
    let renewed = now() - TimeDelta::seconds(5);
    let (elector, mock) = elector(vec![
        Exchange::new(Method::GET, LEASE, 200, lease(ME, renewed, 2, "300")),
        Exchange::new(Method::PUT, LEASE, 409, conflict(RESOURCE, LEASE_NAME)),
    ]);

    let attempt = elector.try_acquire_or_renew(now()).await.unwrap();

    assert_eq!(attempt, Attempt::Conflict);
    assert!(!attempt.is_leader());
    mock.assert_done();
}

#[tokio::test]
async fn create_race_lost_not_leader() {
    let (elector, mock) = elector(vec![
        Exchange::new(Method::GET, LEASE, 404, not_found(RESOURCE, LEASE_NAME)),
        Exchange::new(
            Method::POST,
            LEASES,
            409,
            already_exists(RESOURCE, LEASE_NAME),
        ),
    ]);

    let attempt = elector.try_acquire_or_renew(now()).await.unwrap();

    assert_eq!(attempt, Attempt::Conflict);
    mock.assert_done();
}

#[tokio::test]
async fn forbidden_is_error() {
    let forbidden = crate::controller::mock_api::status_body(
        403,
        "Forbidden",
        "leases.coordination.k8s.io \"adgang-controller\" is forbidden: User \
         \"system:serviceaccount:adgang:adgang\" cannot get resource \"leases\"",
    );
    let (elector, mock) = elector(vec![Exchange::new(Method::GET, LEASE, 403, forbidden)]);

    let error = elector.try_acquire_or_renew(now()).await.unwrap_err();

    assert!(
        error
            .to_string()
            .starts_with("failed to read Lease adgang/adgang-controller"),
        "{error}"
    );
    mock.assert_done();
}

#[test]
fn timing_checked() {
    let settings = LeaderSettings::new(ME);

    let too_slow = settings.clone().with_timing(
        Duration::from_secs(10),
        Duration::from_secs(5),
        Duration::from_secs(2),
    );
    let valid = settings.with_timing(
        Duration::from_secs(11),
        Duration::from_secs(5),
        Duration::from_secs(2),
    );

    assert!(matches!(too_slow, Err(LeaderError::InvalidTiming { .. })));
    assert!(valid.is_ok());
}

/// Waits until the flag has the value `expected`, failing after five seconds.
async fn wait_for(leading: &mut watch::Receiver<bool>, expected: bool) {
    tokio::time::timeout(Duration::from_secs(5), leading.wait_for(|l| *l == expected))
        .await
        .unwrap_or_else(|_| panic!("leading did not become {expected}"))
        .unwrap();
}

#[tokio::test]
async fn lost_lease_clears_flag() {
    let (client, mock) = MockApi::start(
        NAMESPACE,
        vec![
            Exchange::new(Method::GET, LEASE, 404, not_found(RESOURCE, LEASE_NAME)),
            Exchange::new(Method::POST, LEASES, 201, lease(ME, Utc::now(), 0, "101")),
            Exchange::new(Method::GET, LEASE, 200, lease(ME, Utc::now(), 0, "101")),
            Exchange::new(Method::PUT, LEASE, 409, conflict(RESOURCE, LEASE_NAME)),
        ],
    );
    // A long retry interval keeps the replica from asking again after it lost the lease.
    let settings = LeaderSettings::new(ME)
        .with_timing(
            Duration::from_millis(1500),
            Duration::from_millis(100),
            Duration::from_secs(60),
        )
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (mut leading, handle) = LeaderElector::new(client, settings).spawn(async {
        let _ = stopped.await;
    });

    wait_for(&mut leading, true).await;
    wait_for(&mut leading, false).await;
    stop.send(()).unwrap();
    handle.await.unwrap();

    mock.assert_done();
}

#[tokio::test]
async fn shutdown_releases_lease() {
    let (client, mock) = MockApi::start(
        NAMESPACE,
        vec![
            Exchange::new(Method::GET, LEASE, 404, not_found(RESOURCE, LEASE_NAME)),
            Exchange::new(Method::POST, LEASES, 201, lease(ME, Utc::now(), 0, "101")),
            Exchange::new(Method::GET, LEASE, 200, lease(ME, Utc::now(), 0, "101")),
            Exchange::new(Method::PUT, LEASE, 200, lease("", Utc::now(), 0, "102")),
        ],
    );
    let settings = LeaderSettings::new(ME)
        .with_timing(
            Duration::from_secs(30),
            Duration::from_secs(10),
            Duration::from_secs(10),
        )
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (mut leading, handle) = LeaderElector::new(client, settings).spawn(async {
        let _ = stopped.await;
    });

    wait_for(&mut leading, true).await;
    stop.send(()).unwrap();
    handle.await.unwrap();

    assert!(!*leading.borrow());
    mock.assert_done();
    let release = &mock.requests()[3].body;
    assert_eq!(release["spec"]["holderIdentity"], Value::Null);
    assert_eq!(release["metadata"]["resourceVersion"], "101");
}

/// The mail round and the user gauges start on `changed()`, so a renewal that keeps the
/// lease must not wake them.
#[tokio::test]
async fn renewal_does_not_wake_receivers() {
    let renewed = |version: &str| lease(ME, Utc::now(), 0, version);
    let (client, mock) = MockApi::start(
        NAMESPACE,
        vec![
            Exchange::new(Method::GET, LEASE, 404, not_found(RESOURCE, LEASE_NAME)),
            Exchange::new(Method::POST, LEASES, 201, renewed("101")),
            Exchange::new(Method::GET, LEASE, 200, renewed("101")),
            Exchange::new(Method::PUT, LEASE, 200, renewed("102")),
            Exchange::new(Method::GET, LEASE, 200, renewed("102")),
            Exchange::new(Method::PUT, LEASE, 200, renewed("103")),
        ],
    );
    let settings = LeaderSettings::new(ME)
        .with_timing(
            Duration::from_millis(1500),
            Duration::from_millis(100),
            Duration::from_secs(60),
        )
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (mut leading, handle) = LeaderElector::new(client, settings).spawn(async {
        let _ = stopped.await;
    });

    wait_for(&mut leading, true).await;
    leading.borrow_and_update();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while mock.requests().len() < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewals did not happen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(
        !leading.has_changed().unwrap(),
        "a renewal woke the receivers"
    );
    assert!(*leading.borrow());
    drop(stop);
    let _ = handle.await;
}
