//! The Danish working-day calendar: which days the municipality's staff work.
//!
//! A working day is a Monday to Friday that is neither a Danish public holiday nor one of the
//! municipality's closing days. Notice periods are counted in working days, so this module
//! decides how much time the municipality has to act on a submission.
//!
//! The public holidays are New Year's Day, Maundy Thursday, Good Friday, Easter Sunday, Easter
//! Monday, Ascension Day, Whit Sunday, Whit Monday, Christmas Day and Boxing Day, and Great
//! Prayer Day (the fourth Friday after Easter) up to and including 2023. The Danish parliament
//! abolished Great Prayer Day as a public holiday from 2024. Constitution Day (5 June) and
//! Christmas Eve are not public holidays, so a municipality that closes on them configures
//! them as [`ClosingDays`].
//!
//! The movable holidays follow Easter Sunday, computed with the anonymous Gregorian algorithm
//! (Meeus, Jones and Butcher). The calendar covers the years [`FIRST_YEAR`] to [`LAST_YEAR`]
//! and returns [`CalendarError::YearOutOfRange`] for any other year, because the holiday rules
//! coded here are Danish law only within that range as far as it is known today.
//!
//! The module is pure: no clock, no I/O. Callers pass today's date in.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Days, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// First year that the calendar covers.
pub const FIRST_YEAR: i32 = 1900;

/// Last year that the calendar covers.
pub const LAST_YEAR: i32 = 2200;

/// Last year in which Great Prayer Day was a public holiday.
const LAST_GREAT_PRAYER_DAY_YEAR: i32 = 2023;

/// An invalid request to the calendar, such as a year it does not cover.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// A date or year outside [`FIRST_YEAR`]..=[`LAST_YEAR`].
    #[error(
        "year {year} is outside the years {FIRST_YEAR} to {LAST_YEAR} that the working-day \
         calendar covers"
    )]
    YearOutOfRange {
        /// The year requested.
        year: i32,
    },

    /// A month number outside 1 to 12.
    #[error("invalid month {month}: expected 1 to 12")]
    InvalidMonth {
        /// The month requested.
        month: u32,
    },

    /// A fixed closing day that is not a day of the year written as `MM-DD`.
    #[error(
        "invalid fixed closing day {value:?}: expected MM-DD with a day that exists, such as \
         \"06-05\" for 5 June"
    )]
    InvalidMonthDay {
        /// The text as written in the configuration.
        value: String,
    },
}

/// A Danish public holiday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Holiday {
    /// 1 January.
    NewYearsDay,
    /// The Thursday before Easter Sunday.
    MaundyThursday,
    /// The Friday before Easter Sunday.
    GoodFriday,
    /// Easter Sunday.
    EasterSunday,
    /// The Monday after Easter Sunday.
    EasterMonday,
    /// The fourth Friday after Easter Sunday, a public holiday up to and including 2023.
    GreatPrayerDay,
    /// The 39th day after Easter Sunday, a Thursday.
    AscensionDay,
    /// The 49th day after Easter Sunday.
    WhitSunday,
    /// The 50th day after Easter Sunday.
    WhitMonday,
    /// 25 December.
    ChristmasDay,
    /// 26 December.
    BoxingDay,
}

impl Holiday {
    /// Returns the Danish name, as printed in Danish calendars.
    pub fn danish_name(self) -> &'static str {
        match self {
            Holiday::NewYearsDay => "Nytårsdag",
            Holiday::MaundyThursday => "Skærtorsdag",
            Holiday::GoodFriday => "Langfredag",
            Holiday::EasterSunday => "Påskedag",
            Holiday::EasterMonday => "2. påskedag",
            Holiday::GreatPrayerDay => "Store bededag",
            Holiday::AscensionDay => "Kristi himmelfartsdag",
            Holiday::WhitSunday => "Pinsedag",
            Holiday::WhitMonday => "2. pinsedag",
            Holiday::ChristmasDay => "Juledag",
            Holiday::BoxingDay => "2. juledag",
        }
    }

    /// Returns the English name.
    pub fn english_name(self) -> &'static str {
        match self {
            Holiday::NewYearsDay => "New Year's Day",
            Holiday::MaundyThursday => "Maundy Thursday",
            Holiday::GoodFriday => "Good Friday",
            Holiday::EasterSunday => "Easter Sunday",
            Holiday::EasterMonday => "Easter Monday",
            Holiday::GreatPrayerDay => "Great Prayer Day",
            Holiday::AscensionDay => "Ascension Day",
            Holiday::WhitSunday => "Whit Sunday",
            Holiday::WhitMonday => "Whit Monday",
            Holiday::ChristmasDay => "Christmas Day",
            Holiday::BoxingDay => "Boxing Day",
        }
    }
}

impl fmt::Display for Holiday {
    /// Writes both names, such as "Langfredag (Good Friday)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.danish_name(), self.english_name())
    }
}

/// A day of the year without a year, such as 5 June, written `MM-DD` ("06-05").
///
/// `02-29` is accepted and matches only in leap years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MonthDay {
    month: u32,
    day: u32,
}

impl MonthDay {
    /// Creates a day of the year, checking that the day exists in that month of a leap year.
    pub fn new(month: u32, day: u32) -> Result<Self, CalendarError> {
        if !(1..=12).contains(&month) {
            return Err(CalendarError::InvalidMonth { month });
        }

        // 2000 is a leap year, so 29 February counts as a day that exists.
        if NaiveDate::from_ymd_opt(2000, month, day).is_none() {
            return Err(CalendarError::InvalidMonthDay {
                value: format!("{month:02}-{day:02}"),
            });
        }
        Ok(MonthDay { month, day })
    }

    /// Returns the month, 1 to 12.
    pub fn month(self) -> u32 {
        self.month
    }

    /// Returns the day of the month, 1 to 31.
    pub fn day(self) -> u32 {
        self.day
    }

    /// Returns true when `date` falls on this day of the year.
    pub fn matches(self, date: NaiveDate) -> bool {
        date.month() == self.month && date.day() == self.day
    }
}

impl FromStr for MonthDay {
    type Err = CalendarError;

    /// Parses `MM-DD` with exactly two digits on each side of the hyphen.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || CalendarError::InvalidMonthDay {
            value: text.to_owned(),
        };

        let (month, day) = text.split_once('-').ok_or_else(invalid)?;
        let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(month) || !two_digits(day) {
            return Err(invalid());
        }

        let month: u32 = month.parse().map_err(|_| invalid())?;
        let day: u32 = day.parse().map_err(|_| invalid())?;
        MonthDay::new(month, day).map_err(|_| invalid())
    }
}

impl TryFrom<String> for MonthDay {
    type Error = CalendarError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<MonthDay> for String {
    fn from(value: MonthDay) -> Self {
        value.to_string()
    }
}

impl fmt::Display for MonthDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}-{:02}", self.month, self.day)
    }
}

/// The municipality's closing days, on which no one acts on submissions.
///
/// In YAML:
///
/// ```yaml
/// fixed: ["06-05", "12-24", "12-31"]   # every year, written MM-DD
/// dates: [2027-05-07]                  # single dates
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClosingDays {
    /// Days closed every year.
    #[serde(default)]
    pub fixed: Vec<MonthDay>,

    /// Single closed dates.
    #[serde(default)]
    pub dates: BTreeSet<NaiveDate>,
}

impl ClosingDays {
    /// Returns true when `date` is a fixed closing day or one of the single closed dates.
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.dates.contains(&date) || self.fixed.iter().any(|day| day.matches(date))
    }
}

/// The Danish public holidays plus the municipality's closing days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    closing: ClosingDays,
}

impl Calendar {
    /// Creates a calendar with the municipality's closing days.
    pub fn new(closing: ClosingDays) -> Self {
        Calendar { closing }
    }

    /// Creates a calendar with the public holidays only.
    pub fn danish() -> Self {
        Calendar::default()
    }

    /// Returns the closing days that the calendar was created with.
    pub fn closing_days(&self) -> &ClosingDays {
        &self.closing
    }

    /// Returns the public holiday on `date`, if any. Closing days are not holidays.
    pub fn is_holiday(&self, date: NaiveDate) -> Result<Option<Holiday>, CalendarError> {
        let found = holidays(date.year())?
            .into_iter()
            .find(|(day, _)| *day == date)
            .map(|(_, holiday)| holiday);
        Ok(found)
    }

    /// Returns true when `date` is one of the municipality's closing days.
    pub fn is_closing_day(&self, date: NaiveDate) -> bool {
        self.closing.contains(date)
    }

    /// Returns true when `date` is a Monday to Friday that is neither a holiday nor a closing
    /// day.
    pub fn is_working_day(&self, date: NaiveDate) -> Result<bool, CalendarError> {
        let holiday = self.is_holiday(date)?;
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        Ok(!weekend && holiday.is_none() && !self.is_closing_day(date))
    }

    /// Steps back `n` working days from `date`, not counting `date` itself.
    ///
    /// With `n` = 0 it returns `date` unchanged, working day or not.
    pub fn working_days_before(&self, date: NaiveDate, n: u32) -> Result<NaiveDate, CalendarError> {
        let mut current = date;
        for _ in 0..n {
            current = self.previous_working_day(current)?;
        }
        Ok(current)
    }

    /// Returns the last working day before `date`.
    pub fn previous_working_day(&self, date: NaiveDate) -> Result<NaiveDate, CalendarError> {
        let mut current = date;
        loop {
            current = step(current, Direction::Back)?;
            if self.is_working_day(current)? {
                return Ok(current);
            }
        }
    }

    /// Returns the first working day after `date`.
    pub fn next_working_day(&self, date: NaiveDate) -> Result<NaiveDate, CalendarError> {
        let mut current = date;
        loop {
            current = step(current, Direction::Forward)?;
            if self.is_working_day(current)? {
                return Ok(current);
            }
        }
    }

    /// Returns `date` when it is a working day, and otherwise the first working day after it.
    pub fn working_day_on_or_after(&self, date: NaiveDate) -> Result<NaiveDate, CalendarError> {
        if self.is_working_day(date)? {
            Ok(date)
        } else {
            self.next_working_day(date)
        }
    }

    /// Returns the first working day of a month.
    pub fn first_working_day_of_month(
        &self,
        year: i32,
        month: u32,
    ) -> Result<NaiveDate, CalendarError> {
        check_year(year)?;
        let first =
            NaiveDate::from_ymd_opt(year, month, 1).ok_or(CalendarError::InvalidMonth { month })?;
        self.working_day_on_or_after(first)
    }
}

/// Computes Easter Sunday of `year` in the Gregorian calendar.
///
/// This is the anonymous Gregorian algorithm, also known as the Meeus/Jones/Butcher
/// algorithm. The tests compare it with Gauss's algorithm for every covered year.
pub fn easter_sunday(year: i32) -> Result<NaiveDate, CalendarError> {
    check_year(year)?;

    // Position in the 19-year lunar cycle, and the century split for the solar and lunar
    // corrections.
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;

    // The Paschal full moon falls h days after 21 March, before the correction below.
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;

    // Easter is the Sunday after that full moon, l + 1 days after it.
    let l = (32 + 2 * e + 2 * i - h - k) % 7;

    // m = 1 in the rare years where Gauss's algorithm needs its two exceptions, and moves
    // Easter back a week so that it stays on or before 25 April.
    let m = (a + 11 * h + 22 * l) / 451;

    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    let date = NaiveDate::from_ymd_opt(year, month as u32, day as u32)
        .expect("the computus always returns a day between 22 March and 25 April");
    Ok(date)
}

/// Lists the public holidays of `year` in date order.
pub fn holidays(year: i32) -> Result<Vec<(NaiveDate, Holiday)>, CalendarError> {
    let easter = easter_sunday(year)?;
    let fixed = |month, day| NaiveDate::from_ymd_opt(year, month, day).expect("valid date");
    let after_easter = |days: i64| easter + chrono::Duration::days(days);

    let mut list = vec![
        (fixed(1, 1), Holiday::NewYearsDay),
        (after_easter(-3), Holiday::MaundyThursday),
        (after_easter(-2), Holiday::GoodFriday),
        (easter, Holiday::EasterSunday),
        (after_easter(1), Holiday::EasterMonday),
    ];
    if year <= LAST_GREAT_PRAYER_DAY_YEAR {
        list.push((after_easter(26), Holiday::GreatPrayerDay));
    }
    list.extend([
        (after_easter(39), Holiday::AscensionDay),
        (after_easter(49), Holiday::WhitSunday),
        (after_easter(50), Holiday::WhitMonday),
        (fixed(12, 25), Holiday::ChristmasDay),
        (fixed(12, 26), Holiday::BoxingDay),
    ]);
    Ok(list)
}

fn check_year(year: i32) -> Result<(), CalendarError> {
    if (FIRST_YEAR..=LAST_YEAR).contains(&year) {
        Ok(())
    } else {
        Err(CalendarError::YearOutOfRange { year })
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Back,
    Forward,
}

/// Moves one day, failing when the step leaves the covered years.
fn step(date: NaiveDate, direction: Direction) -> Result<NaiveDate, CalendarError> {
    let next = match direction {
        Direction::Back => date.checked_sub_days(Days::new(1)),
        Direction::Forward => date.checked_add_days(Days::new(1)),
    };
    // `None` only comes at the ends of chrono's range, far outside the covered years.
    let next = next.ok_or(CalendarError::YearOutOfRange { year: date.year() })?;
    check_year(next.year())?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).unwrap()
    }

    /// Computes Easter Sunday by Gauss's algorithm with its two exceptions, written
    /// independently of [`easter_sunday`] so that the two check each other.
    fn gauss_easter(year: i32) -> NaiveDate {
        let a = year % 19;
        let b = year % 4;
        let c = year % 7;
        let k = year / 100;
        let p = (13 + 8 * k) / 25;
        let q = k / 4;
        let m = (15 - p + k - q) % 30;
        let n = (4 + k - q) % 7;
        let d = (19 * a + m) % 30;
        let e = (2 * b + 4 * c + 6 * d + n) % 7;

        if d == 29 && e == 6 {
            return date(year, 4, 19);
        }
        if d == 28 && e == 6 && (11 * m + 11) % 30 < 19 {
            return date(year, 4, 18);
        }
        let march_day = 22 + d + e;
        if march_day <= 31 {
            date(year, 3, march_day as u32)
        } else {
            date(year, 4, (march_day - 31) as u32)
        }
    }

    /// Dates checked against `dateutil.easter.easter(year, EASTER_WESTERN)` of python-dateutil
    /// 2.9.0, an independent implementation.
    #[test]
    fn easter_table() {
        let cases = [
            (1900, date(1900, 4, 15)),
            (1961, date(1961, 4, 2)),
            (2000, date(2000, 4, 23)),
            (2008, date(2008, 3, 23)),
            (2011, date(2011, 4, 24)),
            (2019, date(2019, 4, 21)),
            (2024, date(2024, 3, 31)),
            (2025, date(2025, 4, 20)),
            (2026, date(2026, 4, 5)),
            (2027, date(2027, 3, 28)),
            (2038, date(2038, 4, 25)),
            (2100, date(2100, 3, 28)),
            (2200, date(2200, 4, 6)),
        ];
        for (year, expected) in cases {
            assert_eq!(easter_sunday(year), Ok(expected), "Easter {year}");
        }
    }

    #[test]
    fn easter_agrees_with_gauss_every_year() {
        for year in FIRST_YEAR..=LAST_YEAR {
            let easter = easter_sunday(year).unwrap();
            assert_eq!(easter, gauss_easter(year), "Easter {year}");
            assert_eq!(easter.weekday(), Weekday::Sun, "Easter {year}");
            assert!(easter >= date(year, 3, 22), "Easter {year} is {easter}");
            assert!(easter <= date(year, 4, 25), "Easter {year} is {easter}");
        }
    }

    #[test]
    fn easter_rejects_years_outside_range() {
        for year in [FIRST_YEAR - 1, LAST_YEAR + 1, 0, -500, 9999] {
            assert_eq!(
                easter_sunday(year),
                Err(CalendarError::YearOutOfRange { year })
            );
        }
    }

    #[test]
    fn year_out_of_range_message_names_year_and_range() {
        let message = easter_sunday(2201).unwrap_err().to_string();
        assert_eq!(
            message,
            "year 2201 is outside the years 1900 to 2200 that the working-day calendar covers"
        );
    }

    #[test]
    fn holidays_of_2023() {
        let expected = [
            (date(2023, 1, 1), Holiday::NewYearsDay),
            (date(2023, 4, 6), Holiday::MaundyThursday),
            (date(2023, 4, 7), Holiday::GoodFriday),
            (date(2023, 4, 9), Holiday::EasterSunday),
            (date(2023, 4, 10), Holiday::EasterMonday),
            (date(2023, 5, 5), Holiday::GreatPrayerDay),
            (date(2023, 5, 18), Holiday::AscensionDay),
            (date(2023, 5, 28), Holiday::WhitSunday),
            (date(2023, 5, 29), Holiday::WhitMonday),
            (date(2023, 12, 25), Holiday::ChristmasDay),
            (date(2023, 12, 26), Holiday::BoxingDay),
        ];
        assert_eq!(holidays(2023).unwrap(), expected);
    }

    #[test]
    fn holidays_of_2024_have_no_great_prayer_day() {
        let expected = [
            (date(2024, 1, 1), Holiday::NewYearsDay),
            (date(2024, 3, 28), Holiday::MaundyThursday),
            (date(2024, 3, 29), Holiday::GoodFriday),
            (date(2024, 3, 31), Holiday::EasterSunday),
            (date(2024, 4, 1), Holiday::EasterMonday),
            (date(2024, 5, 9), Holiday::AscensionDay),
            (date(2024, 5, 19), Holiday::WhitSunday),
            (date(2024, 5, 20), Holiday::WhitMonday),
            (date(2024, 12, 25), Holiday::ChristmasDay),
            (date(2024, 12, 26), Holiday::BoxingDay),
        ];
        assert_eq!(holidays(2024).unwrap(), expected);
    }

    #[test]
    fn great_prayer_day_ends_after_2023() {
        let calendar = Calendar::danish();
        assert_eq!(
            calendar.is_holiday(date(2023, 5, 5)),
            Ok(Some(Holiday::GreatPrayerDay))
        );
        assert_eq!(calendar.is_working_day(date(2023, 5, 5)), Ok(false));

        // The fourth Friday after Easter 2024 is an ordinary working day.
        assert_eq!(calendar.is_holiday(date(2024, 4, 26)), Ok(None));
        assert_eq!(calendar.is_working_day(date(2024, 4, 26)), Ok(true));
    }

    #[test]
    fn every_holiday_falls_on_its_weekday() {
        for year in FIRST_YEAR..=LAST_YEAR {
            for (day, holiday) in holidays(year).unwrap() {
                let expected = match holiday {
                    Holiday::MaundyThursday | Holiday::AscensionDay => Some(Weekday::Thu),
                    Holiday::GoodFriday | Holiday::GreatPrayerDay => Some(Weekday::Fri),
                    Holiday::EasterSunday | Holiday::WhitSunday => Some(Weekday::Sun),
                    Holiday::EasterMonday | Holiday::WhitMonday => Some(Weekday::Mon),
                    _ => None,
                };
                if let Some(weekday) = expected {
                    assert_eq!(day.weekday(), weekday, "{holiday:?} {day}");
                }
            }
        }
    }

    #[test]
    fn holiday_names() {
        assert_eq!(Holiday::GreatPrayerDay.danish_name(), "Store bededag");
        assert_eq!(Holiday::GreatPrayerDay.english_name(), "Great Prayer Day");
        assert_eq!(Holiday::GoodFriday.to_string(), "Langfredag (Good Friday)");
    }

    #[test]
    fn working_day_table() {
        let mut closing = ClosingDays::default();
        closing.fixed.push("12-24".parse().unwrap());
        closing.dates.insert(date(2027, 5, 7));
        let calendar = Calendar::new(closing);

        let cases = [
            (date(2027, 1, 4), true, "Monday"),
            (date(2027, 1, 8), true, "Friday"),
            (date(2027, 1, 9), false, "Saturday"),
            (date(2027, 1, 10), false, "Sunday"),
            (date(2027, 1, 1), false, "New Year's Day on a Friday"),
            (date(2027, 3, 25), false, "Maundy Thursday"),
            (date(2027, 3, 26), false, "Good Friday"),
            (date(2027, 3, 29), false, "Easter Monday"),
            (date(2027, 3, 30), true, "Tuesday after Easter"),
            (
                date(2027, 4, 23),
                true,
                "fourth Friday after Easter, after 2023",
            ),
            (date(2027, 5, 6), false, "Ascension Day"),
            (date(2027, 5, 7), false, "single closing date"),
            (date(2027, 5, 17), false, "Whit Monday"),
            (date(2027, 6, 4), true, "Friday, not configured as closed"),
            (date(2027, 12, 24), false, "fixed closing day"),
            (
                date(2026, 12, 24),
                false,
                "fixed closing day in another year",
            ),
            (date(2027, 12, 27), true, "Monday after Christmas"),
        ];
        for (day, expected, case) in cases {
            assert_eq!(calendar.is_working_day(day), Ok(expected), "{day} ({case})");
        }
    }

    #[test]
    fn working_days_before_table() {
        let calendar = Calendar::danish();
        let cases = [
            (date(2027, 1, 8), 0, date(2027, 1, 8), "zero steps"),
            (date(2027, 1, 8), 1, date(2027, 1, 7), "Friday, one step"),
            (date(2027, 1, 8), 2, date(2027, 1, 6), "Friday, two steps"),
            (
                date(2027, 1, 11),
                1,
                date(2027, 1, 8),
                "Monday back over the weekend",
            ),
            (date(2027, 1, 10), 2, date(2027, 1, 7), "from a Sunday"),
            (date(2027, 3, 30), 2, date(2027, 3, 23), "over Easter"),
            (
                date(2027, 1, 4),
                2,
                date(2026, 12, 30),
                "over New Year's Day",
            ),
            (date(2026, 12, 28), 2, date(2026, 12, 23), "over Christmas"),
        ];
        for (from, n, expected, case) in cases {
            assert_eq!(
                calendar.working_days_before(from, n),
                Ok(expected),
                "{case}"
            );
        }
    }

    #[test]
    fn next_working_day_table() {
        let calendar = Calendar::danish();
        let cases = [
            (date(2027, 1, 6), date(2027, 1, 7), "midweek"),
            (date(2027, 1, 8), date(2027, 1, 11), "Friday to Monday"),
            (date(2027, 3, 24), date(2027, 3, 30), "over Easter"),
            (date(2026, 12, 24), date(2026, 12, 28), "over Christmas"),
            (date(2026, 12, 31), date(2027, 1, 4), "over New Year's Day"),
        ];
        for (from, expected, case) in cases {
            assert_eq!(calendar.next_working_day(from), Ok(expected), "{case}");
        }
    }

    #[test]
    fn first_working_day_of_month_table() {
        let calendar = Calendar::new(ClosingDays {
            fixed: vec!["06-05".parse().unwrap()],
            dates: BTreeSet::new(),
        });
        let cases = [
            (
                2027,
                1,
                date(2027, 1, 4),
                "1 January is a holiday, then a weekend",
            ),
            (2027, 2, date(2027, 2, 1), "a Monday"),
            (2027, 5, date(2027, 5, 3), "1 May is a Saturday"),
            (2021, 4, date(2021, 4, 6), "1 April is Maundy Thursday"),
            (2026, 6, date(2026, 6, 1), "a Monday"),
        ];
        for (year, month, expected, case) in cases {
            assert_eq!(
                calendar.first_working_day_of_month(year, month),
                Ok(expected),
                "{year}-{month:02} ({case})"
            );
        }
    }

    #[test]
    fn first_working_day_of_month_rejects_invalid_month() {
        let calendar = Calendar::danish();
        assert_eq!(
            calendar.first_working_day_of_month(2027, 13),
            Err(CalendarError::InvalidMonth { month: 13 })
        );
        assert_eq!(
            calendar.first_working_day_of_month(2027, 0),
            Err(CalendarError::InvalidMonth { month: 0 })
        );
    }

    #[test]
    fn stepping_past_range_is_error() {
        let calendar = Calendar::danish();
        assert_eq!(
            calendar.working_days_before(date(1900, 1, 2), 2),
            Err(CalendarError::YearOutOfRange { year: 1899 })
        );
        assert_eq!(
            calendar.next_working_day(date(2200, 12, 31)),
            Err(CalendarError::YearOutOfRange { year: 2201 })
        );
        assert_eq!(
            calendar.is_working_day(date(2300, 1, 3)),
            Err(CalendarError::YearOutOfRange { year: 2300 })
        );
    }

    #[test]
    fn calendar_closed_every_day_ends_in_error() {
        let mut fixed = Vec::new();
        for month in 1..=12 {
            for day in 1..=31 {
                if let Ok(month_day) = MonthDay::new(month, day) {
                    fixed.push(month_day);
                }
            }
        }
        let calendar = Calendar::new(ClosingDays {
            fixed,
            dates: BTreeSet::new(),
        });
        assert_eq!(
            calendar.next_working_day(date(2199, 6, 1)),
            Err(CalendarError::YearOutOfRange { year: 2201 })
        );
    }

    #[test]
    fn month_day_parse_table() {
        let valid = [
            ("06-05", 6, 5),
            ("12-24", 12, 24),
            ("12-31", 12, 31),
            ("02-29", 2, 29),
            ("01-01", 1, 1),
        ];
        for (text, month, day) in valid {
            let parsed: MonthDay = text.parse().unwrap();
            assert_eq!((parsed.month(), parsed.day()), (month, day), "{text}");
            assert_eq!(parsed.to_string(), text);
        }

        let invalid = [
            "6-5", "06-5", "13-01", "00-10", "02-30", "04-31", "06/05", "0605", "", "06-05-",
            "+6-05", "june-05",
        ];
        for text in invalid {
            assert_eq!(
                text.parse::<MonthDay>(),
                Err(CalendarError::InvalidMonthDay {
                    value: text.to_owned()
                }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn leap_day_matches_only_in_leap_years() {
        let leap_day: MonthDay = "02-29".parse().unwrap();
        assert!(leap_day.matches(date(2028, 2, 29)));
        assert!(!leap_day.matches(date(2027, 2, 28)));
        assert!(!leap_day.matches(date(2027, 3, 1)));
    }

    #[test]
    fn closing_days_from_yaml() {
        let text = "fixed: [\"06-05\", \"12-24\", \"12-31\"]\ndates: [2027-05-07, 2027-12-23]\n";
        let closing: ClosingDays = serde_saphyr::from_str(text).unwrap();
        let fixed: Vec<String> = closing.fixed.iter().map(ToString::to_string).collect();
        assert_eq!(fixed, ["06-05", "12-24", "12-31"]);
        assert_eq!(
            closing.dates,
            BTreeSet::from([date(2027, 5, 7), date(2027, 12, 23)])
        );
        assert!(closing.contains(date(2030, 6, 5)));
        assert!(closing.contains(date(2027, 12, 23)));
        assert!(!closing.contains(date(2028, 12, 23)));
    }

    #[test]
    fn closing_days_yaml_fields_are_optional() {
        let closing: ClosingDays = serde_saphyr::from_str("fixed: [\"12-24\"]\n").unwrap();
        assert!(closing.dates.is_empty());
        let closing: ClosingDays = serde_saphyr::from_str("dates: [2027-05-07]\n").unwrap();
        assert!(closing.fixed.is_empty());
    }

    #[test]
    fn closing_days_yaml_rejects_unknown_field() {
        let error = serde_saphyr::from_str::<ClosingDays>("fixed: []\nweekly: [friday]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("weekly"), "{error}");
    }

    #[test]
    fn closing_days_yaml_rejects_invalid_day() {
        let error = serde_saphyr::from_str::<ClosingDays>("fixed: [\"02-30\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("02-30"), "{error}");
    }

    #[test]
    fn closing_days_round_trip() {
        let closing = ClosingDays {
            fixed: vec!["06-05".parse().unwrap()],
            dates: BTreeSet::from([date(2027, 5, 7)]),
        };
        let text = serde_saphyr::to_string(&closing).unwrap();
        let parsed: ClosingDays = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(parsed, closing);
    }
}
