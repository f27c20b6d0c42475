//! Display names: 3 to 24 of `A-Z a-z 0-9 _ -`, unique case-insensitively (the store's
//! `name_key`), and not on the deny list.
//!
//! The deny list has two parts: a few reserved names that are refused as whole names
//! (so "admin" is refused, "badminton" is not), and the words of `--name-deny-list`,
//! refused anywhere inside a name. Both compare a name's *skeleton*: lowercase, without
//! `_` and `-`, with digits that stand for letters read as those letters (`4dm1n` is
//! `admin`), so the list cannot be dodged by spelling.

use crate::error::ApiError;

/// Shortest display name.
pub const MIN_LEN: usize = 3;
/// Longest display name.
pub const MAX_LEN: usize = 24;
/// What a name may be, for error messages.
pub const ALLOWED: &str = "3 to 24 characters of A-Z, a-z, 0-9, _ and -";

/// Names nobody may take: they would pass for the canvas's staff or for nobody.
const RESERVED: &[&str] = &[
    "admin",
    "administrator",
    "moderator",
    "mod",
    "operator",
    "root",
    "system",
    "staff",
    "support",
    "rplace",
    "anonymous",
    "anon",
    "null",
    "undefined",
    "deleted",
];

/// A name's skeleton (see the module docs).
pub fn skeleton(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-' && !c.is_whitespace())
        .map(|c| match c.to_ascii_lowercase() {
            '0' => 'o',
            '1' => 'i',
            '3' => 'e',
            '4' => 'a',
            '5' => 's',
            '7' => 't',
            '8' => 'b',
            '9' => 'g',
            c => c,
        })
        .collect()
}

/// The words of a deny-list file: one a line, `#` starts a comment, blank lines skipped;
/// kept as skeletons. Words whose skeleton is shorter than 3 are dropped: they would
/// refuse half of all names.
pub fn parse_deny_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .map(skeleton)
        .filter(|w| w.chars().count() >= 3)
        .collect()
}

/// The case-folded form that must be unique among accounts.
pub fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn invalid(message: String) -> ApiError {
    ApiError::InvalidField {
        field: "name",
        message,
        allowed: ALLOWED.into(),
    }
}

/// Checks a requested display name against the rules and `deny` (skeletons).
pub fn check(name: &str, deny: &[String]) -> Result<(), ApiError> {
    let len = name.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&len) {
        return Err(invalid(format!(
            "a name has {MIN_LEN} to {MAX_LEN} characters, this one {len}"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(invalid(format!("{c:?} may not be in a name")));
    }
    let s = skeleton(name);
    if RESERVED.iter().any(|r| *r == s) || deny.iter().any(|w| s.contains(w.as_str())) {
        return Err(invalid(format!(
            "{name:?} is not allowed; pick another name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let deny = parse_deny_list("# words\nbadword\n  Ugly-Thing  # trailing comment\nab\n");
        assert_eq!(deny, vec!["badword", "uglything"]);
        for ok in [
            "abc",
            "Alice_99",
            "x-y-z",
            "badminton",
            "moderation",
            &"a".repeat(24),
        ] {
            assert!(check(ok, &deny).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(25),
            "has space",
            "émile",
            "admin",
            "ADMIN",
            "4dm1n",
            "a_d-m_i_n",
            "mod",
            "mybadwordname",
            "B4DW0RD",
            "ugly_thing",
        ] {
            assert!(check(bad, &deny).is_err(), "{bad}");
        }
        assert_eq!(key("AliCe"), "alice");
    }
}
