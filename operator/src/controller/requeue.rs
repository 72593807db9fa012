//! When to reconcile a `SupplierUser` again although nothing in the cluster changed.
//!
//! The plan of a user changes only at the start of a local day. At `validFrom` the account
//! is enabled, after the last day of access the phase becomes Expired, after the grace days
//! the account is deleted, and 14 days before the last day the `Expiring` condition turns
//! true. [`next_boundary`] returns the first of these instants after now, so the
//! controller wakes up on time instead of waiting for the next periodic resync.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::expiry;
use crate::resources::SupplierUserSpec;

/// Days before the last day of access from which the `Expiring` condition is true.
pub const EXPIRING_DAYS: u64 = 14;

/// Time added after a boundary before the reconcile runs, so the reconcile sees the new day
/// even when its clock is slightly behind the scheduler's.
pub const BOUNDARY_MARGIN: Duration = Duration::from_secs(1);

/// Returns true when the last day of access is within [`EXPIRING_DAYS`] of `today` and has
/// not passed.
pub fn is_expiring(last_day: NaiveDate, today: NaiveDate) -> bool {
    let from = last_day
        .checked_sub_days(Days::new(EXPIRING_DAYS))
        .unwrap_or(last_day);
    today >= from && today <= last_day
}

/// Returns the first instant after `now` at which the plan or the conditions of a user with
/// `spec` change, or `None` when no such instant is left.
pub fn next_boundary(
    spec: &SupplierUserSpec,
    now: DateTime<Utc>,
    zone: Tz,
    grace_days: u32,
) -> Option<DateTime<Utc>> {
    let last_day = spec.last_day();
    let deletion_day = last_day
        .checked_add_days(Days::new(u64::from(grace_days)))
        .unwrap_or(last_day);
    let expiring_from = last_day
        .checked_sub_days(Days::new(EXPIRING_DAYS))
        .unwrap_or(last_day);

    [
        expiry::start_of_day(spec.valid_from, zone),
        expiry::start_of_day(expiring_from, zone),
        expiry::end_of_access(last_day, zone),
        expiry::end_of_access(deletion_day, zone),
    ]
    .into_iter()
    .filter(|instant| *instant > now)
    .min()
}

/// Returns how long to wait before the next reconcile: until the next boundary (plus
/// [`BOUNDARY_MARGIN`]) or the resync interval, whichever is sooner.
pub fn requeue_after(
    spec: &SupplierUserSpec,
    now: DateTime<Utc>,
    zone: Tz,
    grace_days: u32,
    resync: Duration,
) -> Duration {
    match next_boundary(spec, now, zone, grace_days) {
        Some(boundary) => {
            let until = (boundary - now).to_std().unwrap_or_default() + BOUNDARY_MARGIN;
            until.min(resync)
        }
        None => resync,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use chrono_tz::Europe::Copenhagen;

    use super::*;
    use crate::resources::Employment;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn spec(valid_from: &str, valid_until: &str) -> SupplierUserSpec {
        SupplierUserSpec {
            supplier: "omsorg-nord".into(),
            given_name: "Anne".into(),
            surname: "Hansen".into(),
            mail: None,
            staff_number: None,
            username: None,
            valid_from: date(valid_from),
            valid_until: date(valid_until),
            employment: Employment {
                start: date(valid_from),
                end: None,
            },
            groups: Vec::new(),
            confidentiality_declaration: None,
        }
    }

    /// (validFrom, validUntil, grace days, now, expected boundary in UTC).
    #[test]
    fn next_boundary_table() {
        let cases: [(&str, &str, u32, &str, Option<&str>); 10] = [
            // Before validFrom in winter: midnight Copenhagen is 23:00 UTC the day before.
            (
                "2027-01-04",
                "2027-06-30",
                0,
                "2027-01-01T12:00:00Z",
                Some("2027-01-03T23:00:00Z"),
            ),
            // Active in summer: the next boundary opens the Expiring window (16 June).
            (
                "2027-01-04",
                "2027-06-30",
                0,
                "2027-03-01T12:00:00Z",
                Some("2027-06-15T22:00:00Z"),
            ),
            // Inside the Expiring window: the end of the last day.
            (
                "2027-01-04",
                "2027-06-30",
                0,
                "2027-06-20T08:00:00Z",
                Some("2027-06-30T22:00:00Z"),
            ),
            // Grace days push the deletion boundary past the end of access.
            (
                "2027-01-04",
                "2027-06-30",
                3,
                "2027-07-01T08:00:00Z",
                Some("2027-07-03T22:00:00Z"),
            ),
            // Everything has passed.
            ("2027-01-04", "2027-06-30", 0, "2027-07-02T00:00:00Z", None),
            // validFrom on the day summer time starts (28 March 2027): midnight is still
            // winter time, UTC+1.
            (
                "2027-03-28",
                "2027-12-31",
                0,
                "2027-03-20T00:00:00Z",
                Some("2027-03-27T23:00:00Z"),
            ),
            // validFrom the day after summer time starts: UTC+2.
            (
                "2027-03-29",
                "2027-12-31",
                0,
                "2027-03-28T12:00:00Z",
                Some("2027-03-28T22:00:00Z"),
            ),
            // Last day is the day summer time ends (31 October 2027): access ends at
            // midnight of 1 November, winter time, UTC+1.
            (
                "2027-01-04",
                "2027-10-31",
                0,
                "2027-10-30T12:00:00Z",
                Some("2027-10-31T23:00:00Z"),
            ),
            // Last day the day before summer time ends: access ends at midnight of 31
            // October, still summer time, UTC+2.
            (
                "2027-01-04",
                "2027-10-30",
                0,
                "2027-10-30T12:00:00Z",
                Some("2027-10-30T22:00:00Z"),
            ),
            // Exactly at a boundary: the next one, never the current instant.
            (
                "2027-01-04",
                "2027-06-30",
                0,
                "2027-01-03T23:00:00Z",
                Some("2027-06-15T22:00:00Z"),
            ),
        ];
        for (from, until, grace, now, expected) in cases {
            let found = next_boundary(&spec(from, until), utc(now), Copenhagen, grace);
            assert_eq!(
                found,
                expected.map(utc),
                "validFrom {from}, validUntil {until}, grace {grace}, now {now}"
            );
        }
    }

    #[test]
    fn requeue_after_capped_by_resync() {
        let spec = spec("2027-01-04", "2027-06-30");
        let now = utc("2027-01-03T22:59:00Z");
        let resync = Duration::from_secs(600);
        let wait = requeue_after(&spec, now, Copenhagen, 0, resync);
        assert_eq!(wait, Duration::from_secs(60) + BOUNDARY_MARGIN);
        let far = Copenhagen
            .with_ymd_and_hms(2027, 3, 1, 12, 0, 0)
            .unwrap()
            .to_utc();
        assert_eq!(requeue_after(&spec, far, Copenhagen, 0, resync), resync);
        let after = utc("2028-01-01T00:00:00Z");
        assert_eq!(requeue_after(&spec, after, Copenhagen, 0, resync), resync);
    }

    #[test]
    fn expiring_window_is_fourteen_days() {
        let last = date("2027-06-30");
        assert!(!is_expiring(last, date("2027-06-15")));
        assert!(is_expiring(last, date("2027-06-16")));
        assert!(is_expiring(last, date("2027-06-30")));
        assert!(!is_expiring(last, date("2027-07-01")));
    }
}
