//! Calendar dates of access and AD's `accountExpires`.
//!
//! AD stores `accountExpires` as a FILETIME: 100-nanosecond intervals since 1601-01-01 UTC,
//! with 0 and `i64::MAX` meaning "never". The admin console's "end of <date>" stores
//! midnight at the start of the next day in local time, so an inclusive last day of access
//! maps to (last day + 1) 00:00 in the configured time zone (Europe/Copenhagen), converted to
//! UTC. AD then blocks the login on time even when Adgang is not running.

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// FILETIME intervals per second.
const TICKS_PER_SECOND: i64 = 10_000_000;

/// Seconds from 1601-01-01 to 1970-01-01, both UTC.
const EPOCH_OFFSET_SECONDS: i64 = 11_644_473_600;

/// Returns the instant at which `date` begins in `zone`.
///
/// Midnight exists on every day in Europe/Copenhagen (the clocks change at 02:00 and 03:00),
/// but a zone that skips midnight gets the first instant after the gap.
pub fn start_of_day(date: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight is a valid time");
    match zone.from_local_datetime(&midnight).earliest() {
        Some(local) => local.with_timezone(&Utc),
        None => {
            // The day starts inside a daylight-saving gap: step forward to its end.
            let later = midnight + chrono::Duration::hours(1);
            zone.from_local_datetime(&later)
                .earliest()
                .expect("a daylight-saving gap is shorter than an hour")
                .with_timezone(&Utc)
        }
    }
}

/// Returns the instant at which access ends: the start of the day after `last_day`.
pub fn end_of_access(last_day: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let next = last_day
        .checked_add_days(Days::new(1))
        .expect("date within chrono's range");
    start_of_day(next, zone)
}

/// Converts an instant to FILETIME units.
pub fn to_filetime(instant: DateTime<Utc>) -> i64 {
    let seconds = instant.timestamp() + EPOCH_OFFSET_SECONDS;
    seconds * TICKS_PER_SECOND + i64::from(instant.timestamp_subsec_nanos()) / 100
}

/// Converts FILETIME units to an instant; `None` for "never" (0 or `i64::MAX`) and values out of
/// chrono's range.
pub fn from_filetime(filetime: i64) -> Option<DateTime<Utc>> {
    if filetime <= 0 || filetime == i64::MAX {
        return None;
    }
    let seconds = filetime.div_euclid(TICKS_PER_SECOND) - EPOCH_OFFSET_SECONDS;
    let nanos = (filetime.rem_euclid(TICKS_PER_SECOND) * 100) as u32;
    DateTime::from_timestamp(seconds, nanos)
}

/// Returns the `accountExpires` value for an inclusive last day of access.
pub fn account_expires(last_day: NaiveDate, zone: Tz) -> i64 {
    to_filetime(end_of_access(last_day, zone))
}

/// Returns the last day of access that an `accountExpires` value stands for, read the way the
/// admin console shows it: the local day before the expiry instant.
pub fn last_day_from_account_expires(filetime: i64, zone: Tz) -> Option<NaiveDate> {
    let instant = from_filetime(filetime)?;
    let local = instant.with_timezone(&zone);
    let day = local.date_naive();

    // An expiry at exactly local midnight ends the previous day; any later time ends that day.
    if local.time() == chrono::NaiveTime::MIN {
        day.pred_opt()
    } else {
        Some(day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Copenhagen;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn filetime_epochs() {
        assert_eq!(to_filetime(utc("1601-01-01T00:00:00Z")), 0);
        assert_eq!(
            to_filetime(utc("1970-01-01T00:00:00Z")),
            116_444_736_000_000_000
        );
        assert_eq!(
            from_filetime(116_444_736_000_000_000),
            Some(utc("1970-01-01T00:00:00Z"))
        );
        assert_eq!(from_filetime(0), None);
        assert_eq!(from_filetime(i64::MAX), None);
    }

    /// Each row: last day of access, the UTC instant at which access ends, and the FILETIME
    /// computed independently (Python's datetime) as (seconds since 1970 + 11 644 473 600) × 10⁷.
    #[test]
    fn account_expires_table() {
        let cases = [
            // Winter time (UTC+1): ends 2027-01-08 23:00 UTC.
            (
                date(2027, 1, 8),
                "2027-01-08T23:00:00Z",
                134_439_228_000_000_000,
            ),
            // Summer time (UTC+2): ends 2027-07-01 22:00 UTC.
            (
                date(2027, 7, 1),
                "2027-07-01T22:00:00Z",
                134_589_528_000_000_000,
            ),
            // Last day before the spring change (2027-03-28 02:00 → 03:00): the next day
            // starts at 00:00 CET, before the change.
            (
                date(2027, 3, 27),
                "2027-03-27T23:00:00Z",
                134_506_620_000_000_000,
            ),
            // Last day is the spring change day: the next day starts in summer time.
            (
                date(2027, 3, 28),
                "2027-03-28T22:00:00Z",
                134_507_448_000_000_000,
            ),
            // Last day is the autumn change day (2027-10-31 03:00 → 02:00).
            (
                date(2027, 10, 31),
                "2027-10-31T23:00:00Z",
                134_694_972_000_000_000,
            ),
            // Leap day, and the day before it.
            (
                date(2028, 2, 29),
                "2028-02-29T23:00:00Z",
                134_799_516_000_000_000,
            ),
            (
                date(2028, 2, 28),
                "2028-02-28T23:00:00Z",
                134_798_652_000_000_000,
            ),
            // Last day of a year.
            (
                date(2026, 12, 31),
                "2026-12-31T23:00:00Z",
                134_432_316_000_000_000,
            ),
        ];
        for (last_day, end, filetime) in cases {
            assert_eq!(end_of_access(last_day, Copenhagen), utc(end), "{last_day}");
            assert_eq!(
                account_expires(last_day, Copenhagen),
                filetime,
                "{last_day}"
            );
        }
    }

    #[test]
    fn round_trip_over_five_years() {
        let mut day = date(2026, 1, 1);
        while day < date(2031, 1, 1) {
            let filetime = account_expires(day, Copenhagen);
            assert_eq!(
                last_day_from_account_expires(filetime, Copenhagen),
                Some(day),
                "{day}"
            );
            day = day.succ_opt().unwrap();
        }
    }

    #[test]
    fn start_of_day_in_summer_and_winter() {
        assert_eq!(
            start_of_day(date(2027, 6, 15), Copenhagen),
            utc("2027-06-14T22:00:00Z")
        );
        assert_eq!(
            start_of_day(date(2027, 12, 15), Copenhagen),
            utc("2027-12-14T23:00:00Z")
        );
    }

    #[test]
    fn expiry_set_by_hand_at_noon_reads_as_that_day() {
        let noon = to_filetime(utc("2027-05-10T10:00:00Z"));
        assert_eq!(
            last_day_from_account_expires(noon, Copenhagen),
            Some(date(2027, 5, 10))
        );
    }
}
