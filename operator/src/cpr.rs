//! Detection of text shaped like a Danish CPR number (the civil registration number).
//!
//! A CPR number identifies a person for life, so no file in the desired state may contain one,
//! not even in a comment. The detector looks for the shape, not for real numbers: six digits
//! that form a date as DDMMYY, an optional hyphen, then four digits, with no digit directly
//! before or after. It does not apply the old modulus-11 check, because CPR numbers issued
//! since 2007 need not pass it.
//!
//! The century is not known from DDMMYY alone, so 29 February is accepted whenever YY is
//! divisible by 4 (00 included). Letters, spaces and punctuation next to the digits do not
//! stop a match, so a run of digits inside a longer word is reported too, because a false
//! alarm costs less than a committed CPR number.
//!
//! A match carries only its position. The digits are never returned, stored or logged,
//! because an error message that quoted them would spread the number further.

use std::fmt;

use serde::Serialize;

/// Position of something shaped like a CPR number. Both numbers count from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CprMatch {
    /// Line number.
    pub line: usize,
    /// Column of the first digit, in characters.
    pub column: usize,
}

impl fmt::Display for CprMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {} contains something shaped like a CPR number, and CPR numbers \
             must never be committed",
            self.line, self.column
        )
    }
}

/// Finds everything shaped like a CPR number in `text`, in order of position.
///
/// Lines end at `\n`, and a `\r` before it is ignored.
pub fn find(text: &str) -> Vec<CprMatch> {
    let mut matches = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        for column in find_in_line(&chars) {
            matches.push(CprMatch {
                line: index + 1,
                column: column + 1,
            });
        }
    }
    matches
}

/// Returns the 0-based character positions of the matches in one line.
fn find_in_line(chars: &[char]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        if !chars[start].is_ascii_digit() {
            start += 1;
            continue;
        }

        let end = digit_run_end(chars, start);
        let digits = &chars[start..end];
        let matched = match digits.len() {
            // DDMMYYNNNN written without a hyphen.
            10 => is_date(&digits[..6]),
            // DDMMYY-NNNN: the hyphen must be followed by exactly four digits.
            6 if chars.get(end) == Some(&'-') => {
                let serial_start = end + 1;
                let serial_end = digit_run_end(chars, serial_start);
                serial_end - serial_start == 4 && is_date(digits)
            }
            _ => false,
        };
        if matched {
            found.push(start);
        }

        // A hyphenated serial is itself a digit run of four, which never matches, so the scan
        // can go on right after this run.
        start = end;
    }
    found
}

/// Returns the index after the run of ASCII digits that starts at `start`.
fn digit_run_end(chars: &[char], start: usize) -> usize {
    let length = chars[start..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    start + length
}

/// Returns true when six digits form a valid date as DDMMYY in some century.
fn is_date(digits: &[char]) -> bool {
    let number = |i: usize| {
        let tens = digits[i].to_digit(10).unwrap_or(0);
        let ones = digits[i + 1].to_digit(10).unwrap_or(0);
        tens * 10 + ones
    };
    let day = number(0);
    let month = number(2);
    let year = number(4);

    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The numbers below are made up to test the shape. Any resemblance to a person's CPR
    // number would be a coincidence of the format.

    #[test]
    fn match_table() {
        let cases = [
            ("010190-1234", 1, "with hyphen"),
            ("0101901234", 1, "without hyphen"),
            ("# contact: 010190-1234\n", 12, "inside a comment"),
            ("note: \"010190-1234\"", 8, "inside a quoted string"),
            ("note: '0101901234'", 8, "inside single quotes"),
            ("id=010190-1234;", 4, "between punctuation"),
            ("abc0101901234xyz", 4, "between letters"),
            ("310190-1234", 1, "31 January"),
            ("300490-1234", 1, "30 April"),
            ("290200-1234", 1, "29 February with YY 00"),
            ("290296-1234", 1, "29 February with YY divisible by 4"),
            ("311299-9999", 1, "31 December"),
            ("12-010190-1234", 4, "after a hyphen"),
            ("010190-1234-5678", 1, "followed by a hyphen and digits"),
            ("æøå 010190-1234", 5, "columns count characters, not bytes"),
        ];
        for (text, column, case) in cases {
            let matches = find(text);
            assert_eq!(matches, [CprMatch { line: 1, column }], "{case}");
        }
    }

    #[test]
    fn non_match_table() {
        let cases = [
            ("320190-1234", "day 32"),
            ("000190-1234", "day 0"),
            ("011390-1234", "month 13"),
            ("010090-1234", "month 0"),
            ("310490-1234", "31 April"),
            ("300290-1234", "30 February"),
            ("290297-1234", "29 February with YY not divisible by 4"),
            ("010190123456", "12-digit run"),
            ("10101901234", "11-digit run"),
            ("1010190-1234", "digit before the date"),
            ("010190-12345", "five digits after the hyphen"),
            ("010190-123", "three digits after the hyphen"),
            ("010190 1234", "space in place of the hyphen"),
            ("010190--1234", "two hyphens"),
            ("cvr: \"12345678\"", "CVR number, eight digits"),
            ("validFrom: 2027-01-04", "ISO date"),
            ("phone: +45 12 34 56 78", "phone number"),
            ("phone: +4512345678", "phone number without spaces"),
            ("", "empty text"),
        ];
        for (text, case) in cases {
            assert_eq!(find(text), [], "{case}: {text:?}");
        }
    }

    #[test]
    fn reports_lines_and_columns() {
        let text = "apiVersion: adgang.example.org/v1alpha1\n\
                    kind: SupplierUser\n\
                    spec:\n\
                    \x20 staffNumber: \"0101901234\"\r\n\
                    \x20 # 311299-0000 and 010100-0000\n";
        let expected = [
            CprMatch {
                line: 4,
                column: 17,
            },
            CprMatch { line: 5, column: 5 },
            CprMatch {
                line: 5,
                column: 21,
            },
        ];
        assert_eq!(find(text), expected);
    }

    #[test]
    fn message_never_echoes_digits() {
        let matches = find("first line\n  # 010190-1234\n");
        assert_eq!(matches.len(), 1);

        let message = matches[0].to_string();
        assert_eq!(
            message,
            "line 2, column 5 contains something shaped like a CPR number, and CPR numbers must \
             never be committed"
        );
        let debug = format!("{:?}", matches[0]);
        for shown in [&message, &debug] {
            assert!(!shown.contains("010190"), "{shown}");
            assert!(!shown.contains("1234"), "{shown}");
        }
    }
}
