//! Escaping of values put into DNs (RFC 4514) and search filters (RFC 4515), and parsing of
//! the DNs that AD returns, so that they can be compared whatever their casing and escaping.

use std::fmt::Write;

use super::DirectoryError;

/// Escapes `value` for use as an attribute value in a DN, such as the name in `OU=<value>`.
///
/// Escapes `, + " \ < > ; =` with a backslash, a leading `#` or space, a trailing space, and
/// control characters (NUL included) as `\XX`. Other characters, Danish letters among them,
/// stay as they are (UTF-8).
pub fn escape_dn_value(value: &str) -> String {
    let char_count = value.chars().count();
    let mut escaped = String::with_capacity(value.len() + 8);

    for (index, c) in value.chars().enumerate() {
        let is_first = index == 0;
        let is_last = index + 1 == char_count;
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                escaped.push('\\');
                escaped.push(c);
            }
            '#' if is_first => escaped.push_str("\\#"),
            ' ' if is_first || is_last => escaped.push_str("\\ "),
            c if c.is_ascii_control() => {
                write!(escaped, "\\{:02X}", c as u32).expect("writing to a String cannot fail");
            }
            c => escaped.push(c),
        }
    }
    escaped
}

/// Escapes `value` for use as an assertion value in a search filter, such as
/// `(sAMAccountName=<value>)`.
///
/// Escapes `* ( ) \` and NUL as `\2a \28 \29 \5c \00`; other characters stay as they are.
pub fn escape_filter_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' => escaped.push_str("\\2a"),
            '(' => escaped.push_str("\\28"),
            ')' => escaped.push_str("\\29"),
            '\\' => escaped.push_str("\\5c"),
            '\0' => escaped.push_str("\\00"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A parsed distinguished name, normalised for comparison: attribute types and values in
/// lower case, escapes resolved, and the values of a multi-valued RDN sorted.
///
/// AD compares the naming attributes of DNs (CN, OU, DC) without regard to case, and it
/// returns DNs in its own casing, so DNs from AD and from configuration compare equal here.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dn {
    /// RDNs from the leaf to the root; each is a sorted list of (type, value) pairs.
    rdns: Vec<Vec<(String, String)>>,
}

impl Dn {
    /// Parses a DN in the string form of RFC 4514.
    pub fn parse(dn: &str) -> Result<Self, DirectoryError> {
        let invalid = |reason: &str| DirectoryError::InvalidDn {
            dn: dn.to_owned(),
            reason: reason.to_owned(),
        };

        let mut rdns = Vec::new();
        if dn.trim().is_empty() {
            return Ok(Self { rdns });
        }

        let mut rdn = Vec::new();
        let mut rest = dn;
        loop {
            let (attribute_type, after_type) = rest
                .split_once('=')
                .ok_or_else(|| invalid("an RDN has no '='"))?;
            let attribute_type = attribute_type.trim();
            if attribute_type.is_empty() {
                return Err(invalid("an RDN has an empty attribute type"));
            }

            let (value, separator, after_value) = parse_value(after_type).map_err(invalid)?;
            rdn.push((attribute_type.to_ascii_lowercase(), value.to_lowercase()));

            match separator {
                Some('+') => {}
                Some(_) | None => {
                    rdn.sort();
                    rdns.push(std::mem::take(&mut rdn));
                }
            }
            match separator {
                None => break,
                Some(_) => rest = after_value,
            }
        }
        Ok(Self { rdns })
    }

    /// Returns true when `self` lies strictly below `ancestor`.
    pub fn is_below(&self, ancestor: &Dn) -> bool {
        self.rdns.len() > ancestor.rdns.len() && self.rdns.ends_with(&ancestor.rdns)
    }

    /// Returns the DN one level up, or `None` for the empty DN.
    pub fn parent(&self) -> Option<Dn> {
        if self.rdns.is_empty() {
            return None;
        }
        Some(Self {
            rdns: self.rdns[1..].to_vec(),
        })
    }
}

/// Returns true when two DNs name the same object; DNs that fail to parse are unequal.
pub fn same_dn(a: &str, b: &str) -> bool {
    match (Dn::parse(a), Dn::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Reads one attribute value up to the next unescaped `,`, `;` or `+`.
///
/// Returns the unescaped value (unescaped spaces at either end trimmed), the separator found,
/// and the rest of the input after it.
fn parse_value(input: &str) -> Result<(String, Option<char>, &str), &'static str> {
    let mut bytes = Vec::with_capacity(input.len());
    // Length of `bytes` up to and including the last escaped or non-space byte.
    let mut significant_len = 0;
    let mut chars = input.char_indices().peekable();

    while let Some((index, c)) = chars.next() {
        match c {
            ',' | ';' | '+' => {
                bytes.truncate(significant_len);
                let value = String::from_utf8(bytes).map_err(|_| "a value is not UTF-8")?;
                return Ok((value, Some(c), &input[index + 1..]));
            }
            '\\' => {
                let (_, first) = chars.next().ok_or("the DN ends in a lone backslash")?;
                if first.is_ascii_hexdigit() {
                    let (_, second) = chars.next().ok_or("a hex escape is cut short")?;
                    let pair: String = [first, second].iter().collect();
                    let byte = u8::from_str_radix(&pair, 16).map_err(|_| "invalid hex escape")?;
                    bytes.push(byte);
                } else {
                    let mut buffer = [0; 4];
                    bytes.extend_from_slice(first.encode_utf8(&mut buffer).as_bytes());
                }
                significant_len = bytes.len();
            }
            ' ' if bytes.is_empty() => {}
            c => {
                let mut buffer = [0; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                if c != ' ' {
                    significant_len = bytes.len();
                }
            }
        }
    }

    bytes.truncate(significant_len);
    let value = String::from_utf8(bytes).map_err(|_| "a value is not UTF-8")?;
    Ok((value, None, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_dn_value_table() {
        let cases = [
            ("Hjemmepleje Øst", "Hjemmepleje Øst"),
            ("Åse Ærø", "Åse Ærø"),
            ("Jensen, Søren", "Jensen\\, Søren"),
            ("A+B", "A\\+B"),
            ("\"Citat\"", "\\\"Citat\\\""),
            ("back\\slash", "back\\\\slash"),
            ("<tag>", "\\<tag\\>"),
            ("a;b", "a\\;b"),
            ("a=b", "a\\=b"),
            ("#1 Leverandør", "\\#1 Leverandør"),
            ("mid#dle", "mid#dle"),
            (" leading", "\\ leading"),
            ("trailing ", "trailing\\ "),
            (" ", "\\ "),
            ("in side", "in side"),
            ("nul\0byte", "nul\\00byte"),
            ("", ""),
        ];

        for (value, expected) in cases {
            assert_eq!(escape_dn_value(value), expected, "value: {value:?}");
        }
    }

    #[test]
    fn escape_filter_value_table() {
        let cases = [
            ("søren.ø", "søren.ø"),
            ("a*", "a\\2a"),
            ("(admin)", "\\28admin\\29"),
            ("back\\slash", "back\\5cslash"),
            ("nul\0", "nul\\00"),
            ("Jensen, Søren + \"x\"", "Jensen, Søren + \"x\""),
        ];

        for (value, expected) in cases {
            assert_eq!(escape_filter_value(value), expected, "value: {value:?}");
        }
    }

    #[test]
    fn escaped_values_parse_back_to_themselves() {
        let values = [
            "Jensen, Søren",
            "A+B",
            "\"Citat\"",
            "back\\slash",
            "#1 Leverandør",
            " leading and trailing ",
            "nul\0byte",
            "æøå ÆØÅ",
        ];

        for value in values {
            let dn = format!("OU={},DC=adgang,DC=test", escape_dn_value(value));
            let parsed = Dn::parse(&dn).unwrap();
            assert_eq!(
                parsed.rdns[0],
                vec![("ou".to_owned(), value.to_lowercase())],
                "{dn}"
            );
            assert_eq!(parsed.rdns.len(), 3, "{dn}");
        }
    }

    #[test]
    fn dn_compare_ignores_case_and_escape_form() {
        let cases = [
            (
                "OU=Leverandører,DC=adgang,DC=test",
                "ou=LEVERANDØRER,dc=Adgang,dc=TEST",
            ),
            (
                "CN=Jensen\\, Søren,OU=X,DC=a",
                "cn=Jensen\\2C Søren,ou=x,dc=A",
            ),
            ("OU=Leverand\\C3\\B8rer,DC=a", "OU=Leverandører,DC=a"),
            ("CN=a+UID=b,DC=a", "UID=b+CN=a,DC=a"),
            ("OU=x, DC=a", "OU=x,DC=a"),
        ];

        for (a, b) in cases {
            assert!(same_dn(a, b), "{a} vs {b}");
        }
    }

    #[test]
    fn dn_compare_tells_different_names_apart() {
        let cases = [
            ("OU=a,DC=test", "OU=b,DC=test"),
            ("CN=x,OU=a,DC=test", "OU=a,DC=test"),
            ("CN=a\\,b,DC=test", "CN=a,CN=b,DC=test"),
            ("CN=a+CN=b,DC=test", "CN=a,CN=b,DC=test"),
        ];

        for (a, b) in cases {
            assert!(!same_dn(a, b), "{a} vs {b}");
        }
    }

    #[test]
    fn is_below_is_strict() {
        let base = Dn::parse("OU=Leverandører,DC=adgang,DC=test").unwrap();
        let below = Dn::parse("CN=x,OU=acme,ou=LEVERANDØRER,DC=adgang,DC=test").unwrap();
        let sibling = Dn::parse("OU=Grupper,DC=adgang,DC=test").unwrap();
        let suffix_lookalike = Dn::parse("OU=x,OU=yLeverandører,DC=adgang,DC=test").unwrap();

        assert!(below.is_below(&base));
        assert!(!base.is_below(&base));
        assert!(!sibling.is_below(&base));
        assert!(!suffix_lookalike.is_below(&base));
        assert_eq!(below.parent().unwrap().parent().unwrap(), base);
    }

    #[test]
    fn parse_rejects_malformed_dns() {
        let cases = ["OU", "=x,DC=a", "OU=x\\", "OU=x\\4", "OU=\\ff\\fe"];

        for dn in cases {
            assert!(Dn::parse(dn).is_err(), "{dn}");
        }
    }
}
