//! The notice rules: how early a supplier must submit a change to a user, and what a new
//! account needs before the municipality accepts it.
//!
//! The municipality needs two working days ([`NOTICE_WORKING_DAYS`]) to act on a submission.
//! The deadline for a date D is therefore found by stepping back two working days from D, not
//! counting D itself ([`deadline`]). A submission on or before its deadline is in time. For D =
//! Friday 8 January 2027 the deadline is Wednesday 6 January 2027.
//!
//! Which date D is depends on the change ([`check`]):
//!
//! - A creation needs notice before `validFrom`.
//! - An extension (a later `validUntil`) needs notice before the current `validUntil`, because
//!   the account must not lapse while the municipality acts on it. An update is classified
//!   as an extension by `validUntil` alone, whatever else it changes.
//! - An update that moves `validFrom` earlier on an account that has not started yet (its old
//!   `validFrom` is after today) counts as a creation with the new `validFrom`. On an account
//!   that has started, access is already given, so an earlier `validFrom` needs no notice.
//! - A deletion needs no notice and is always allowed: a removed file, an employment end set
//!   or moved earlier, a shortened `validUntil` or a later `validFrom`.
//!
//! A late submission is rejected with the deadline it missed and the earliest `validFrom`
//! that would be in time now: the smallest date E whose deadline is today or later
//! ([`earliest_in_time`]). E can fall on a weekend, because a weekend date has the same
//! deadline as the working day after it.
//!
//! A creation also needs four things. The confidentiality declaration must be received no
//! later than the submission date. The period (`validFrom` to `validUntil`, both included)
//! must be within the supplier's maximum, and `validUntil` no later than the employment end.
//! The groups must be ones that the supplier may use. An update is held to the same period and employment rules when it
//! lengthens the period, and to the group rule for the groups it adds. Rules that an update
//! neither touches nor tightens are left alone, so that a shortening is never rejected for an
//! older problem.
//!
//! Everything here is pure: callers pass the submission date in as `today`.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{Days, NaiveDate};
use serde::Serialize;

use crate::calendar::{Calendar, CalendarError};
use crate::resources::{SupplierSpec, SupplierUserSpec};

/// Working days between the deadline and the date it protects, not counting that date.
pub const NOTICE_WORKING_DAYS: u32 = 2;

/// A change to one user's file, between the accepted version and the submitted one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change<'a> {
    /// A new user.
    Create {
        /// The submitted spec.
        new: &'a SupplierUserSpec,
    },
    /// A changed user.
    Update {
        /// The accepted spec.
        old: &'a SupplierUserSpec,
        /// The submitted spec.
        new: &'a SupplierUserSpec,
    },
    /// A removed user.
    Delete {
        /// The accepted spec.
        old: &'a SupplierUserSpec,
    },
}

/// Classifies a change from the accepted spec (`old`) and the submitted one (`new`).
///
/// Returns `None` when both are absent, because then nothing changed.
pub fn classify<'a>(
    old: Option<&'a SupplierUserSpec>,
    new: Option<&'a SupplierUserSpec>,
) -> Option<Change<'a>> {
    match (old, new) {
        (None, Some(new)) => Some(Change::Create { new }),
        (Some(old), Some(new)) => Some(Change::Update { old, new }),
        (Some(old), None) => Some(Change::Delete { old }),
        (None, None) => None,
    }
}

/// Computes the last submission date that is in time for date `d`: two working days before
/// `d`, not counting `d` itself.
pub fn deadline(calendar: &Calendar, d: NaiveDate) -> Result<NaiveDate, CalendarError> {
    calendar.working_days_before(d, NOTICE_WORKING_DAYS)
}

/// Finds the earliest date whose deadline is `today` or later, so that a submission made
/// `today` for it is in time.
pub fn earliest_in_time(calendar: &Calendar, today: NaiveDate) -> Result<NaiveDate, CalendarError> {
    // A deadline is always before its date, so the search starts the day after today. The
    // deadline grows with the date, so the first date that passes is the smallest.
    let mut candidate = today;
    loop {
        candidate =
            candidate
                .checked_add_days(Days::new(1))
                .ok_or(CalendarError::YearOutOfRange {
                    year: chrono::Datelike::year(&today),
                })?;
        if deadline(calendar, candidate)? >= today {
            return Ok(candidate);
        }
    }
}

/// The rule that a submitted change breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ViolationKind {
    /// Submitted after the deadline.
    LateSubmission,
    /// A new account without a confidentiality declaration, or one without a reference.
    MissingDeclaration,
    /// The confidentiality declaration was received after the submission date.
    DeclarationAfterSubmission,
    /// The period from `validFrom` to `validUntil` is longer than the supplier's maximum.
    PeriodTooLong,
    /// `validUntil` is after the employment end.
    PastEmploymentEnd,
    /// A group that the supplier may not use.
    GroupNotAllowed,
    /// A date outside the years that the working-day calendar covers.
    OutsideCalendar,
}

/// A broken rule, with the field concerned and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Field concerned, as a dotted path (`spec.validFrom`).
    pub field: &'static str,
    /// Description of the problem, naming the dates and values.
    pub message: String,
    /// Advice on how to fix it.
    pub hint: String,
    /// The rule broken.
    pub kind: ViolationKind,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.field, self.message, self.hint)
    }
}

/// Checks a change against the notice rules and the rules for new accounts.
///
/// `today` is the submission date. Returns every rule broken, or nothing when the change
/// may be applied.
pub fn check(
    change: Change<'_>,
    supplier: &SupplierSpec,
    calendar: &Calendar,
    today: NaiveDate,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    match change {
        Change::Create { new } => {
            let notice = Notice::Create;
            violations.extend(check_notice(notice, new.valid_from, calendar, today));
            check_declaration(new, today, &mut violations);
            check_period(new, supplier, &mut violations);
            check_employment_end(new, &mut violations);
            check_groups(&new.groups, new, supplier, &mut violations);
        }

        Change::Update { old, new } => {
            let not_started = old.valid_from > today;
            let earlier_start = new.valid_from < old.valid_from;
            if earlier_start && not_started {
                let notice = Notice::EarlierStart {
                    old_valid_from: old.valid_from,
                };
                violations.extend(check_notice(notice, new.valid_from, calendar, today));
            }

            let extended = new.valid_until > old.valid_until;
            if extended {
                let notice = Notice::Extension;
                violations.extend(check_notice(notice, old.valid_until, calendar, today));
                check_employment_end(new, &mut violations);
            }

            if extended || earlier_start {
                check_period(new, supplier, &mut violations);
            }

            let old_groups: BTreeSet<String> =
                old.groups.iter().map(|g| g.to_lowercase()).collect();
            let added: Vec<String> = new
                .groups
                .iter()
                .filter(|g| !old_groups.contains(&g.to_lowercase()))
                .cloned()
                .collect();
            check_groups(&added, new, supplier, &mut violations);
        }

        Change::Delete { .. } => {}
    }
    violations
}

/// The kind of change that a notice check is for, which decides the field and the wording.
#[derive(Clone, Copy)]
enum Notice {
    /// A new account, with D = `validFrom`.
    Create,
    /// `validFrom` moved earlier on an account that has not started, with D = the new
    /// `validFrom`.
    EarlierStart { old_valid_from: NaiveDate },
    /// A later `validUntil`, with D = the old `validUntil`.
    Extension,
}

impl Notice {
    fn field(self) -> &'static str {
        match self {
            Notice::Create | Notice::EarlierStart { .. } => "spec.validFrom",
            Notice::Extension => "spec.validUntil",
        }
    }

    /// Describes date `d` in a message, such as "validFrom 2027-01-08".
    fn describe(self, d: NaiveDate) -> String {
        match self {
            Notice::Create => format!("validFrom {d}"),
            Notice::EarlierStart { old_valid_from } => {
                format!("moving validFrom from {old_valid_from} to {d}")
            }
            Notice::Extension => format!("extending validUntil {d}"),
        }
    }

    fn hint(self, d: NaiveDate, earliest: NaiveDate) -> String {
        match self {
            Notice::Create => format!(
                "set validFrom to {earliest} or later: a new account must be submitted at least \
                 {NOTICE_WORKING_DAYS} working days before validFrom"
            ),
            Notice::EarlierStart { old_valid_from } => format!(
                "keep validFrom at {old_valid_from}, or set it to {earliest} or later: an \
                 account that has not started counts as new, so it must be submitted at least \
                 {NOTICE_WORKING_DAYS} working days before the new validFrom"
            ),
            Notice::Extension => format!(
                "keep validUntil at {d}, because an extension must be submitted at least \
                 {NOTICE_WORKING_DAYS} working days before the current validUntil. After the \
                 account is deleted, submit the person as a new user with validFrom {earliest} \
                 or later"
            ),
        }
    }
}

/// Checks that a submission made `today` is in time for date `d`.
fn check_notice(
    notice: Notice,
    d: NaiveDate,
    calendar: &Calendar,
    today: NaiveDate,
) -> Option<Violation> {
    let outside = |error: CalendarError| Violation {
        field: notice.field(),
        message: format!(
            "notice for {} cannot be checked: {error}",
            notice.describe(d)
        ),
        hint: "correct the date, which is probably mistyped".to_owned(),
        kind: ViolationKind::OutsideCalendar,
    };

    let missed = match deadline(calendar, d) {
        Ok(missed) if today <= missed => return None,
        Ok(missed) => missed,
        Err(error) => return Some(outside(error)),
    };
    let earliest = match earliest_in_time(calendar, today) {
        Ok(earliest) => earliest,
        Err(error) => return Some(outside(error)),
    };

    Some(Violation {
        field: notice.field(),
        message: match notice {
            Notice::Extension => format!(
                "submitted {today}, after the deadline {missed} for {}, so access ends on {d} \
                 and the account is then deleted; a new access period could start on \
                 {earliest} at the earliest",
                notice.describe(d)
            ),
            _ => format!(
                "submitted {today}, after the deadline {missed} for {}; the earliest validFrom \
                 that is in time now is {earliest}",
                notice.describe(d)
            ),
        },
        hint: notice.hint(d, earliest),
        kind: ViolationKind::LateSubmission,
    })
}

fn check_declaration(new: &SupplierUserSpec, today: NaiveDate, violations: &mut Vec<Violation>) {
    let Some(declaration) = &new.confidentiality_declaration else {
        violations.push(Violation {
            field: "spec.confidentialityDeclaration",
            message: "a new account needs a confidentiality declaration, and none is given"
                .to_owned(),
            hint: "add confidentialityDeclaration with the date the signed declaration was \
                   received and the supplier's reference to it"
                .to_owned(),
            kind: ViolationKind::MissingDeclaration,
        });
        return;
    };

    if declaration.reference.trim().is_empty() {
        violations.push(Violation {
            field: "spec.confidentialityDeclaration.reference",
            message: "the confidentiality declaration has an empty reference".to_owned(),
            hint: "write the supplier's journal or document number of the declaration".to_owned(),
            kind: ViolationKind::MissingDeclaration,
        });
    }

    if declaration.received > today {
        violations.push(Violation {
            field: "spec.confidentialityDeclaration.received",
            message: format!(
                "the confidentiality declaration was received {}, after the submission date \
                 {today}",
                declaration.received
            ),
            hint: "the signed declaration must be received before the account is submitted: \
                   correct the date, or submit the account once the declaration is received"
                .to_owned(),
            kind: ViolationKind::DeclarationAfterSubmission,
        });
    }
}

fn check_period(new: &SupplierUserSpec, supplier: &SupplierSpec, violations: &mut Vec<Violation>) {
    let max_days = supplier.max_access_days();
    // Both ends are included. A validUntil before validFrom is rejected when the file is
    // parsed, so a negative length never reaches the comparison as a long period.
    let days = (new.valid_until - new.valid_from).num_days() + 1;
    if days <= i64::from(max_days) {
        return;
    }

    let last_allowed = new.valid_from + chrono::Duration::days(i64::from(max_days) - 1);
    violations.push(Violation {
        field: "spec.validUntil",
        message: format!(
            "the period {} to {} is {days} days, more than the {max_days} days that supplier \
             {:?} allows",
            new.valid_from, new.valid_until, new.supplier
        ),
        hint: format!("set validUntil to {last_allowed} or earlier"),
        kind: ViolationKind::PeriodTooLong,
    });
}

fn check_employment_end(new: &SupplierUserSpec, violations: &mut Vec<Violation>) {
    let Some(end) = new.employment.end else {
        return;
    };
    if new.valid_until <= end {
        return;
    }

    violations.push(Violation {
        field: "spec.validUntil",
        message: format!(
            "validUntil {} is after the employment ends ({end})",
            new.valid_until
        ),
        hint: format!(
            "set validUntil to {end} or earlier, because access ends with the employment"
        ),
        kind: ViolationKind::PastEmploymentEnd,
    });
}

/// Checks `groups` (all of a new user's groups, or the ones an update adds) against the
/// supplier's groups, ignoring case as AD does.
fn check_groups(
    groups: &[String],
    new: &SupplierUserSpec,
    supplier: &SupplierSpec,
    violations: &mut Vec<Violation>,
) {
    let allowed: BTreeSet<String> = supplier.groups.iter().map(|g| g.to_lowercase()).collect();
    let allowed_list = if supplier.groups.is_empty() {
        "none".to_owned()
    } else {
        supplier.groups.join(", ")
    };

    for group in groups {
        if allowed.contains(&group.to_lowercase()) {
            continue;
        }
        violations.push(Violation {
            field: "spec.groups",
            message: format!(
                "group {group:?} is not one that supplier {:?} may use",
                new.supplier
            ),
            hint: format!(
                "use only the supplier's groups ({allowed_list}), or ask the municipality to \
                 allow it in supplier.yaml"
            ),
            kind: ViolationKind::GroupNotAllowed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{ClosingDays, MonthDay};
    use crate::resources::ConfidentialityDeclaration;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).unwrap()
    }

    fn closing(fixed: &[&str]) -> Calendar {
        let fixed: Vec<MonthDay> = fixed.iter().map(|text| text.parse().unwrap()).collect();
        Calendar::new(ClosingDays {
            fixed,
            dates: BTreeSet::new(),
        })
    }

    /// Builds a fictitious user, employed since 2026 with a declaration received in 2026.
    fn user(valid_from: NaiveDate, valid_until: NaiveDate) -> SupplierUserSpec {
        let text = format!(
            "supplier: testfirma\n\
             givenName: Test\n\
             surname: Testesen\n\
             validFrom: {valid_from}\n\
             validUntil: {valid_until}\n\
             employment: {{start: 2026-01-01}}\n\
             groups: [Nexus-Brugere]\n\
             confidentialityDeclaration: {{received: 2026-01-01, reference: TEST-1}}\n"
        );
        serde_saphyr::from_str(&text).unwrap()
    }

    fn supplier() -> SupplierSpec {
        let text = "displayName: Testfirma ApS\n\
                    cvr: \"00000000\"\n\
                    secureMail: sikker@testfirma.example\n\
                    organizationalUnit: Testfirma\n\
                    groups: [Nexus-Brugere, Nexus-Hjemmepleje]\n";
        serde_saphyr::from_str(text).unwrap()
    }

    fn kinds(violations: &[Violation]) -> Vec<ViolationKind> {
        violations.iter().map(|v| v.kind).collect()
    }

    fn check_create(
        calendar: &Calendar,
        new: &SupplierUserSpec,
        today: NaiveDate,
    ) -> Vec<Violation> {
        check(Change::Create { new }, &supplier(), calendar, today)
    }

    fn check_update(
        old: &SupplierUserSpec,
        new: &SupplierUserSpec,
        today: NaiveDate,
    ) -> Vec<Violation> {
        check(
            Change::Update { old, new },
            &supplier(),
            &Calendar::danish(),
            today,
        )
    }

    #[test]
    fn deadline_table() {
        let danish = Calendar::danish();
        let new_year = closing(&["12-24", "12-31"]);
        let june = closing(&["06-05"]);
        let cases = [
            (&danish, date(2027, 1, 8), date(2027, 1, 6), "Friday"),
            (&danish, date(2027, 1, 9), date(2027, 1, 7), "Saturday"),
            (&danish, date(2027, 1, 10), date(2027, 1, 7), "Sunday"),
            (&danish, date(2027, 1, 11), date(2027, 1, 7), "Monday"),
            (
                &danish,
                date(2027, 3, 30),
                date(2027, 3, 23),
                "Tuesday after Easter Monday",
            ),
            (
                &danish,
                date(2027, 1, 4),
                date(2026, 12, 30),
                "Monday after New Year's Day",
            ),
            (
                &new_year,
                date(2027, 1, 4),
                date(2026, 12, 29),
                "with 31 December closed",
            ),
            (
                &danish,
                date(2027, 1, 5),
                date(2026, 12, 31),
                "Tuesday after New Year",
            ),
            (
                &new_year,
                date(2027, 1, 5),
                date(2026, 12, 30),
                "Tuesday, 31 December closed",
            ),
            (
                &danish,
                date(2026, 12, 28),
                date(2026, 12, 23),
                "Monday after Christmas",
            ),
            (
                &new_year,
                date(2026, 12, 28),
                date(2026, 12, 22),
                "with 24 December closed",
            ),
            (
                &danish,
                date(2026, 6, 8),
                date(2026, 6, 4),
                "Monday after 5 June",
            ),
            (
                &june,
                date(2026, 6, 8),
                date(2026, 6, 3),
                "with 5 June closed",
            ),
        ];
        for (calendar, d, expected, case) in cases {
            assert_eq!(deadline(calendar, d), Ok(expected), "{d} ({case})");
        }
    }

    #[test]
    fn earliest_in_time_table() {
        let calendar = Calendar::danish();
        let cases = [
            (date(2027, 1, 6), date(2027, 1, 8), "Wednesday"),
            (
                date(2027, 1, 7),
                date(2027, 1, 9),
                "Thursday gives a Saturday",
            ),
            (date(2027, 1, 9), date(2027, 1, 13), "Saturday"),
            (
                date(2027, 3, 24),
                date(2027, 3, 31),
                "Wednesday before Easter",
            ),
            (
                date(2026, 12, 30),
                date(2027, 1, 1),
                "before New Year's Day",
            ),
        ];
        for (today, expected, case) in cases {
            assert_eq!(
                earliest_in_time(&calendar, today),
                Ok(expected),
                "{today} ({case})"
            );
        }
    }

    /// The earliest date is in time, and the day before it is not, on every day of three
    /// years with closing days around Christmas.
    #[test]
    fn earliest_in_time_is_smallest() {
        let calendar = closing(&["06-05", "12-24", "12-31"]);
        let mut today = date(2026, 1, 1);
        while today <= date(2028, 12, 31) {
            let earliest = earliest_in_time(&calendar, today).unwrap();
            let day_before = earliest.pred_opt().unwrap();
            assert!(deadline(&calendar, earliest).unwrap() >= today, "{today}");
            assert!(deadline(&calendar, day_before).unwrap() < today, "{today}");
            today = today.succ_opt().unwrap();
        }
    }

    #[test]
    fn classify_table() {
        let spec = user(date(2027, 1, 8), date(2027, 3, 31));
        assert_eq!(
            classify(None, Some(&spec)),
            Some(Change::Create { new: &spec })
        );
        assert_eq!(
            classify(Some(&spec), Some(&spec)),
            Some(Change::Update {
                old: &spec,
                new: &spec
            })
        );
        assert_eq!(
            classify(Some(&spec), None),
            Some(Change::Delete { old: &spec })
        );
        assert_eq!(classify(None, None), None);
    }

    #[test]
    fn create_on_deadline_is_in_time() {
        let new = user(date(2027, 1, 8), date(2027, 3, 31));
        let violations = check_create(&Calendar::danish(), &new, date(2027, 1, 6));
        assert_eq!(violations, []);
    }

    #[test]
    fn create_after_deadline_is_late() {
        let new = user(date(2027, 1, 8), date(2027, 3, 31));
        let violations = check_create(&Calendar::danish(), &new, date(2027, 1, 7));
        assert_eq!(kinds(&violations), [ViolationKind::LateSubmission]);
        assert_eq!(violations[0].field, "spec.validFrom");
        assert_eq!(
            violations[0].message,
            "submitted 2027-01-07, after the deadline 2027-01-06 for validFrom 2027-01-08; \
             the earliest validFrom that is in time now is 2027-01-09"
        );
        assert!(
            violations[0].hint.contains("2027-01-09"),
            "{}",
            violations[0].hint
        );
    }

    /// Each case gives the calendar, validFrom and the last day in time. A submission on the
    /// day after that must be late.
    #[test]
    fn create_boundary_table() {
        let danish = Calendar::danish();
        let new_year = closing(&["12-24", "12-31"]);
        let june = closing(&["06-05"]);
        let cases = [
            (
                &danish,
                date(2027, 3, 30),
                date(2027, 3, 23),
                "across Easter",
            ),
            (
                &danish,
                date(2027, 1, 4),
                date(2026, 12, 30),
                "across New Year",
            ),
            (
                &new_year,
                date(2027, 1, 4),
                date(2026, 12, 29),
                "31 December closed",
            ),
            (
                &danish,
                date(2026, 12, 28),
                date(2026, 12, 23),
                "across Christmas",
            ),
            (
                &new_year,
                date(2026, 12, 28),
                date(2026, 12, 22),
                "24 December closed",
            ),
            (&danish, date(2026, 6, 8), date(2026, 6, 4), "5 June open"),
            (&june, date(2026, 6, 8), date(2026, 6, 3), "5 June closed"),
            (
                &danish,
                date(2027, 1, 10),
                date(2027, 1, 7),
                "validFrom on a Sunday",
            ),
            (
                &danish,
                date(2027, 1, 9),
                date(2027, 1, 7),
                "validFrom on a Saturday",
            ),
        ];
        for (calendar, valid_from, last_in_time, case) in cases {
            let new = user(valid_from, valid_from + chrono::Duration::days(30));
            let on_time = check_create(calendar, &new, last_in_time);
            assert_eq!(kinds(&on_time), [], "{case}: submitted {last_in_time}");

            let day_after = last_in_time.succ_opt().unwrap();
            let late = check_create(calendar, &new, day_after);
            assert_eq!(
                kinds(&late),
                [ViolationKind::LateSubmission],
                "{case}: {day_after}"
            );
            let expected = format!("after the deadline {last_in_time}");
            assert!(
                late[0].message.contains(&expected),
                "{case}: {}",
                late[0].message
            );
        }
    }

    #[test]
    fn create_outside_calendar_is_violation() {
        let new = user(date(2300, 1, 1), date(2300, 1, 31));
        let violations = check_create(&Calendar::danish(), &new, date(2027, 1, 4));
        assert_eq!(kinds(&violations), [ViolationKind::OutsideCalendar]);
        assert_eq!(violations[0].field, "spec.validFrom");
        assert!(
            violations[0].message.contains("2300"),
            "{}",
            violations[0].message
        );
    }

    #[test]
    fn extension_on_deadline_is_in_time() {
        let old = user(date(2026, 10, 1), date(2027, 1, 8));
        let new = user(date(2026, 10, 1), date(2027, 3, 31));
        assert_eq!(check_update(&old, &new, date(2027, 1, 6)), []);
    }

    #[test]
    fn extension_after_deadline_is_late() {
        let old = user(date(2026, 10, 1), date(2027, 1, 8));
        let new = user(date(2026, 10, 1), date(2027, 3, 31));
        let violations = check_update(&old, &new, date(2027, 1, 7));
        assert_eq!(kinds(&violations), [ViolationKind::LateSubmission]);
        assert_eq!(violations[0].field, "spec.validUntil");
        assert_eq!(
            violations[0].message,
            "submitted 2027-01-07, after the deadline 2027-01-06 for extending validUntil \
             2027-01-08, so access ends on 2027-01-08 and the account is then deleted; a new \
             access period could start on 2027-01-09 at the earliest"
        );
    }

    #[test]
    fn extension_is_classified_by_valid_until() {
        let old = user(date(2026, 10, 1), date(2027, 1, 8));
        let mut new = user(date(2026, 10, 1), date(2027, 3, 31));
        new.given_name = "Anden".to_owned();
        new.mail = Some("anden@testfirma.example".to_owned());
        let violations = check_update(&old, &new, date(2027, 1, 7));
        assert_eq!(kinds(&violations), [ViolationKind::LateSubmission]);
    }

    #[test]
    fn update_without_new_dates_needs_no_notice() {
        let old = user(date(2026, 10, 1), date(2027, 1, 8));
        let mut new = old.clone();
        new.surname = "Andersen".to_owned();
        new.groups.push("Nexus-Hjemmepleje".to_owned());
        assert_eq!(check_update(&old, &new, date(2027, 1, 8)), []);
    }

    #[test]
    fn earlier_start_before_account_starts_counts_as_creation() {
        let old = user(date(2027, 2, 1), date(2027, 3, 31));
        let new = user(date(2027, 1, 8), date(2027, 3, 31));
        assert_eq!(check_update(&old, &new, date(2027, 1, 6)), []);

        let violations = check_update(&old, &new, date(2027, 1, 7));
        assert_eq!(kinds(&violations), [ViolationKind::LateSubmission]);
        assert_eq!(violations[0].field, "spec.validFrom");
        assert!(
            violations[0]
                .message
                .contains("moving validFrom from 2027-02-01 to 2027-01-08"),
            "{}",
            violations[0].message
        );
        assert!(
            violations[0].hint.contains("2027-02-01"),
            "{}",
            violations[0].hint
        );
    }

    #[test]
    fn earlier_start_after_account_started_needs_no_notice() {
        let old = user(date(2027, 1, 4), date(2027, 3, 31));
        let new = user(date(2027, 1, 1), date(2027, 3, 31));
        assert_eq!(check_update(&old, &new, date(2027, 1, 7)), []);
    }

    #[test]
    fn deletions_are_always_allowed() {
        let old = user(date(2026, 10, 1), date(2027, 3, 31));
        let mut no_declaration = old.clone();
        no_declaration.confidentiality_declaration = None;
        no_declaration.groups = vec!["Domain Admins".to_owned()];
        let today = date(2027, 3, 31);

        let deleted = check(
            Change::Delete {
                old: &no_declaration,
            },
            &supplier(),
            &Calendar::danish(),
            today,
        );
        assert_eq!(deleted, [], "file removed");

        let mut shortened = old.clone();
        shortened.valid_until = today;
        assert_eq!(
            check_update(&old, &shortened, today),
            [],
            "validUntil shortened"
        );

        let mut employment_ended = old.clone();
        employment_ended.employment.end = Some(today);
        assert_eq!(
            check_update(&old, &employment_ended, today),
            [],
            "employment end set"
        );

        let mut later_start = old.clone();
        later_start.valid_from = date(2027, 1, 1);
        assert_eq!(
            check_update(&old, &later_start, today),
            [],
            "validFrom later"
        );
    }

    #[test]
    fn shortening_keeps_older_problems() {
        // The supplier's maximum was lowered and a group withdrawn after this user was
        // accepted, but shortening the access is still allowed.
        let mut old = user(date(2026, 1, 5), date(2026, 12, 31));
        old.groups.push("Retired-Group".to_owned());
        let mut supplier = supplier();
        supplier.max_access_days = Some(30);
        let mut new = old.clone();
        new.valid_until = date(2026, 11, 30);

        let violations = check(
            Change::Update {
                old: &old,
                new: &new,
            },
            &supplier,
            &Calendar::danish(),
            date(2026, 11, 2),
        );
        assert_eq!(violations, []);
    }

    #[test]
    fn declaration_missing() {
        let mut new = user(date(2027, 1, 8), date(2027, 3, 31));
        new.confidentiality_declaration = None;
        let violations = check_create(&Calendar::danish(), &new, date(2027, 1, 6));
        assert_eq!(kinds(&violations), [ViolationKind::MissingDeclaration]);
        assert_eq!(violations[0].field, "spec.confidentialityDeclaration");
    }

    #[test]
    fn declaration_with_empty_reference() {
        let mut new = user(date(2027, 1, 8), date(2027, 3, 31));
        new.confidentiality_declaration = Some(ConfidentialityDeclaration {
            received: date(2027, 1, 4),
            reference: "  ".to_owned(),
        });
        let violations = check_create(&Calendar::danish(), &new, date(2027, 1, 6));
        assert_eq!(kinds(&violations), [ViolationKind::MissingDeclaration]);
        assert_eq!(
            violations[0].field,
            "spec.confidentialityDeclaration.reference"
        );
    }

    #[test]
    fn declaration_date_table() {
        let today = date(2027, 1, 6);
        let cases = [
            (date(2026, 12, 1), vec![], "well before"),
            (today, vec![], "on the submission date"),
            (
                date(2027, 1, 7),
                vec![ViolationKind::DeclarationAfterSubmission],
                "day after",
            ),
        ];
        for (received, expected, case) in cases {
            let mut new = user(date(2027, 1, 8), date(2027, 3, 31));
            new.confidentiality_declaration = Some(ConfidentialityDeclaration {
                received,
                reference: "TEST-2".to_owned(),
            });
            let violations = check_create(&Calendar::danish(), &new, today);
            assert_eq!(kinds(&violations), expected, "{case}");
        }
    }

    #[test]
    fn period_length_table() {
        let from = date(2027, 1, 11);
        let cases = [
            (None, 365, true, "366 days, the default maximum"),
            (None, 366, false, "367 days"),
            (Some(90), 89, true, "90 days"),
            (Some(90), 90, false, "91 days"),
        ];
        for (max_access_days, extra_days, allowed, case) in cases {
            let mut supplier = supplier();
            supplier.max_access_days = max_access_days;
            let new = user(from, from + chrono::Duration::days(extra_days));
            let violations = check(
                Change::Create { new: &new },
                &supplier,
                &Calendar::danish(),
                date(2027, 1, 6),
            );
            let expected = if allowed {
                vec![]
            } else {
                vec![ViolationKind::PeriodTooLong]
            };
            assert_eq!(kinds(&violations), expected, "{case}");
        }
    }

    #[test]
    fn period_too_long_names_last_allowed_day() {
        let mut supplier = supplier();
        supplier.max_access_days = Some(90);
        let new = user(date(2027, 1, 11), date(2027, 4, 11));
        let violations = check(
            Change::Create { new: &new },
            &supplier,
            &Calendar::danish(),
            date(2027, 1, 6),
        );
        assert_eq!(violations[0].field, "spec.validUntil");
        assert_eq!(
            violations[0].message,
            "the period 2027-01-11 to 2027-04-11 is 91 days, more than the 90 days that \
             supplier \"testfirma\" allows"
        );
        assert_eq!(
            violations[0].hint,
            "set validUntil to 2027-04-10 or earlier"
        );
    }

    #[test]
    fn extension_past_maximum_is_violation() {
        let old = user(date(2027, 1, 11), date(2027, 6, 30));
        let new = user(date(2027, 1, 11), date(2028, 6, 30));
        let violations = check_update(&old, &new, date(2027, 1, 6));
        assert_eq!(kinds(&violations), [ViolationKind::PeriodTooLong]);
    }

    #[test]
    fn employment_end_table() {
        let cases = [
            (date(2027, 6, 29), true, "before the end"),
            (date(2027, 6, 30), true, "on the last day of employment"),
            (date(2027, 7, 1), false, "the day after"),
        ];
        for (valid_until, allowed, case) in cases {
            let mut new = user(date(2027, 1, 11), valid_until);
            new.employment.end = Some(date(2027, 6, 30));
            let violations = check_create(&Calendar::danish(), &new, date(2027, 1, 6));
            let expected = if allowed {
                vec![]
            } else {
                vec![ViolationKind::PastEmploymentEnd]
            };
            assert_eq!(kinds(&violations), expected, "{case}");
        }
    }

    #[test]
    fn extension_past_employment_end_is_violation() {
        let mut old = user(date(2027, 1, 11), date(2027, 3, 31));
        old.employment.end = Some(date(2027, 6, 30));
        let mut new = old.clone();
        new.valid_until = date(2027, 7, 31);
        let violations = check_update(&old, &new, date(2027, 1, 6));
        assert_eq!(kinds(&violations), [ViolationKind::PastEmploymentEnd]);
        assert_eq!(
            violations[0].message,
            "validUntil 2027-07-31 is after the employment ends (2027-06-30)"
        );
    }

    #[test]
    fn group_table() {
        let cases = [
            (vec!["Nexus-Brugere"], 0, "allowed"),
            (vec!["nexus-hjemmepleje"], 0, "allowed in another case"),
            (vec!["Domain Admins"], 1, "not allowed"),
            (
                vec!["Nexus-Brugere", "Domain Admins", "Backup Operators"],
                2,
                "two not allowed",
            ),
        ];
        for (groups, disallowed, case) in cases {
            let mut new = user(date(2027, 1, 11), date(2027, 3, 31));
            new.groups = groups.into_iter().map(str::to_owned).collect();
            let violations = check_create(&Calendar::danish(), &new, date(2027, 1, 6));
            assert_eq!(
                kinds(&violations),
                vec![ViolationKind::GroupNotAllowed; disallowed],
                "{case}"
            );
        }
    }

    #[test]
    fn disallowed_group_message_names_group_and_supplier() {
        let mut new = user(date(2027, 1, 11), date(2027, 3, 31));
        new.groups = vec!["Domain Admins".to_owned()];
        let violations = check_create(&Calendar::danish(), &new, date(2027, 1, 6));
        assert_eq!(violations[0].field, "spec.groups");
        assert_eq!(
            violations[0].message,
            "group \"Domain Admins\" is not one that supplier \"testfirma\" may use"
        );
        assert!(
            violations[0]
                .hint
                .contains("Nexus-Brugere, Nexus-Hjemmepleje")
        );
    }

    #[test]
    fn update_adding_disallowed_group_is_violation() {
        let old = user(date(2026, 10, 1), date(2027, 3, 31));
        let mut new = old.clone();
        new.groups.push("Domain Admins".to_owned());
        let violations = check_update(&old, &new, date(2027, 1, 6));
        assert_eq!(kinds(&violations), [ViolationKind::GroupNotAllowed]);
    }

    #[test]
    fn violations_accumulate() {
        let mut new = user(date(2027, 1, 8), date(2028, 3, 31));
        new.confidentiality_declaration = None;
        new.groups = vec!["Domain Admins".to_owned()];
        let violations = check_create(&Calendar::danish(), &new, date(2027, 1, 7));
        assert_eq!(
            kinds(&violations),
            [
                ViolationKind::LateSubmission,
                ViolationKind::MissingDeclaration,
                ViolationKind::PeriodTooLong,
                ViolationKind::GroupNotAllowed,
            ]
        );
    }
}
