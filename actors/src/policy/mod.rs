//! Account policy (issue 8 §2, R-F12): what a password must not be, and how user names are normalised and
//! kept apart from look-alikes. Pure functions, no I/O; the users API applies them at account creation,
//! password changes and login.
//!
//! **Passwords.** At least [`MIN_PASSWORD_CHARS`] characters and at most [`MAX_PASSWORD_BYTES`] bytes; not
//! only white space; at least three different characters; not containing the user name; not a common
//! password (`common_passwords.txt`, embedded, with digits or symbols added around it, or with the usual
//! letter-for-digit swaps). Each refusal has a stable `code` (and parameters) that pages render in their
//! language.
//!
//! **User names.** NFKC-normalised and lower-cased (so `ＡＤＭＩＮ` and `ADMIN` are `admin`), then limited to a
//! safe set: ASCII letters and digits, `.`, `_`, `-`, and CJK ideographs (Chinese names). Everything else is
//! refused, which keeps out Cyrillic, Greek and other look-alikes of Latin letters (`аdmin` with a Cyrillic
//! `а`). Within the set, [`skeleton`] folds the remaining confusables (`0`/`o`, `1`/`l`, `rn`/`m`, `vv`/`w`,
//! `cl`/`d`, after UTS #39); a new name whose skeleton is an existing user's is refused.

use std::collections::HashSet;
use std::sync::OnceLock;

use unicode_normalization::UnicodeNormalization;

pub use crate::model::user::{MAX_PASSWORD_BYTES, MAX_USERNAME_CHARS};

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Fewest different characters a password must have.
const MIN_DISTINCT_CHARS: usize = 3;
/// A user name of at least this many characters may not appear inside the password.
const MIN_NAME_IN_PASSWORD: usize = 3;

const COMMON: &str = include_str!("common_passwords.txt");

/// Why a password is refused. `code()` is stable (pages translate it); `to_string()` is the English text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password must have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("the password must not be only white space")]
    Blank,
    #[error("the password must have at least {MIN_DISTINCT_CHARS} different characters")]
    Repetitive,
    #[error("the password must not contain the user name")]
    ContainsUsername,
    #[error("the password is too common (it is on the list of passwords attackers try first)")]
    Common,
}

impl PasswordProblem {
    pub fn code(&self) -> &'static str {
        match self {
            PasswordProblem::TooShort => "password_too_short",
            PasswordProblem::TooLong => "password_too_long",
            PasswordProblem::Blank => "password_blank",
            PasswordProblem::Repetitive => "password_repetitive",
            PasswordProblem::ContainsUsername => "password_contains_username",
            PasswordProblem::Common => "password_common",
        }
    }

    /// Parameters of the message, for pages that render it in their language.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        match self {
            PasswordProblem::TooShort => vec![("min", MIN_PASSWORD_CHARS.to_string())],
            PasswordProblem::TooLong => vec![("max", MAX_PASSWORD_BYTES.to_string())],
            PasswordProblem::Repetitive => vec![("min", MIN_DISTINCT_CHARS.to_string())],
            _ => Vec::new(),
        }
    }
}

/// Why a password is not acceptable for `username` (already normalised), if it is not.
pub fn password_problem(password: &str, username: &str) -> Option<PasswordProblem> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(PasswordProblem::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some(PasswordProblem::TooShort);
    }
    if password.chars().all(char::is_whitespace) {
        return Some(PasswordProblem::Blank);
    }
    let distinct: HashSet<char> = password.chars().collect();
    if distinct.len() < MIN_DISTINCT_CHARS {
        return Some(PasswordProblem::Repetitive);
    }
    let lower = password.to_lowercase();
    if username.chars().count() >= MIN_NAME_IN_PASSWORD && lower.contains(&username.to_lowercase()) {
        return Some(PasswordProblem::ContainsUsername);
    }
    if is_common(&lower) {
        return Some(PasswordProblem::Common);
    }
    None
}

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect())
}

/// Whether a lower-cased password is a common one: on the list, or a listed word of at least four letters with
/// digits or symbols around it, or such a word with letters swapped for look-alike digits (`p4ssw0rd`).
fn is_common(lower: &str) -> bool {
    let set = common();
    if set.contains(lower) {
        return true;
    }
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    let listed_word = |w: &str| w.chars().count() >= 4 && w.chars().all(char::is_alphabetic) && set.contains(w);
    if listed_word(core) {
        return true;
    }
    // Undo the usual swaps, then look again (on the core with the ends trimmed of digits and symbols, where
    // the swapped letters are inside: `p@ssw0rd!` → `p@ssw0rd` → `password`).
    let core = lower.trim_start_matches(|c: char| !c.is_alphabetic() && unleet(c).is_none());
    let core = core.trim_end_matches(|c: char| !c.is_alphabetic());
    let swapped: String = core.chars().map(|c| unleet(c).unwrap_or(c)).collect();
    listed_word(&swapped) || set.contains(swapped.as_str())
}

fn unleet(c: char) -> Option<char> {
    Some(match c {
        '@' | '4' => 'a',
        '3' => 'e',
        '0' => 'o',
        '1' | '!' => 'i',
        '5' | '$' => 's',
        '7' => 't',
        _ => return None,
    })
}

/// Why a user name is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsernameProblem {
    #[error("the user name is empty")]
    Empty,
    #[error("the user name is longer than {MAX_USERNAME_CHARS} characters")]
    TooLong,
    #[error("the user name may only have letters a-z, digits, '.', '_', '-' and Chinese characters")]
    Characters,
}

impl UsernameProblem {
    pub fn code(&self) -> &'static str {
        match self {
            UsernameProblem::Empty => "username_empty",
            UsernameProblem::TooLong => "username_too_long",
            UsernameProblem::Characters => "username_characters",
        }
    }
}

/// The one form of a user name: NFKC, lower-cased (NFKC again, as lower-casing may undo it), checked against
/// the safe set. Used at creation and at login, so `Admin` logs in as `admin`.
pub fn normalise_username(raw: &str) -> Result<String, UsernameProblem> {
    // Bound the work before normalising attacker input (NFKC may expand a character to many).
    if raw.chars().count() > 4 * MAX_USERNAME_CHARS {
        return Err(UsernameProblem::TooLong);
    }
    let name: String = raw.nfkc().collect::<String>().to_lowercase().nfkc().collect();
    let name = name.trim().to_owned();
    if name.is_empty() {
        return Err(UsernameProblem::Empty);
    }
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err(UsernameProblem::TooLong);
    }
    if !name.chars().all(safe_char) {
        return Err(UsernameProblem::Characters);
    }
    Ok(name)
}

/// ASCII lower-case letters, digits, `.`, `_`, `-`, and CJK unified ideographs (with extension A).
fn safe_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}')
}

/// The look-alike skeleton of a normalised name: two names with the same skeleton read alike
/// (`admin`, `adrnin`, `0perator`/`operator`, `l1ly`/`llly`).
pub fn skeleton(name: &str) -> String {
    let folded: String = name
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' | 'I' => 'l',
            _ => c,
        })
        .collect();
    folded.replace("rn", "m").replace("vv", "w").replace("cl", "d")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_their_code() {
        let cases = [
            ("short", PasswordProblem::TooShort),
            ("aaaaaaaaaa", PasswordProblem::Repetitive),
            ("          ", PasswordProblem::Blank),
            ("abababababab", PasswordProblem::Repetitive),
            ("my-ops1-secret-x", PasswordProblem::ContainsUsername),
            ("MY-OPS1-secret-x", PasswordProblem::ContainsUsername),
            ("password123", PasswordProblem::Common),
            ("Password2024!", PasswordProblem::Common),
            ("P@ssw0rd1234", PasswordProblem::Common),
            ("qwertyuiop", PasswordProblem::Common),
            ("1234567890", PasswordProblem::Common),
            ("woaini1314520", PasswordProblem::Common),
            ("!!sunshine99", PasswordProblem::Common),
        ];
        for (pw, problem) in cases {
            assert_eq!(password_problem(pw, "ops1"), Some(problem.clone()), "{pw:?}");
        }
        assert_eq!(password_problem(&"x".repeat(MAX_PASSWORD_BYTES + 1), "ops1"), Some(PasswordProblem::TooLong));
        for good in ["a long enough password", "Kq7-river-Fence-93", "水厂东村泵站夜班值守记录"] {
            assert_eq!(password_problem(good, "ops1"), None, "{good:?}");
        }
        assert_eq!(PasswordProblem::TooShort.code(), "password_too_short");
        assert_eq!(PasswordProblem::TooShort.params(), vec![("min", "10".to_owned())]);
    }

    #[test]
    fn the_embedded_list_is_read() {
        assert!(common().len() > 600, "{}", common().len());
        assert!(!common().contains(
            "# common passwords and the words they are built from, one per line, lower case (issue 8 §2, r-f12)."
        ));
    }

    #[test]
    fn user_names_are_normalised_and_look_alikes_refused() {
        assert_eq!(normalise_username("ADMIN").unwrap(), "admin");
        assert_eq!(normalise_username("ＡＤＭＩＮ").unwrap(), "admin");
        assert_eq!(normalise_username(" Ops.Shift-1 ").unwrap(), "ops.shift-1");
        assert_eq!(normalise_username("张伟").unwrap(), "张伟");
        // Cyrillic а, Greek ο: not in the safe set.
        assert_eq!(normalise_username("\u{0430}dmin"), Err(UsernameProblem::Characters));
        assert_eq!(normalise_username("adm\u{03BF}n"), Err(UsernameProblem::Characters));
        assert_eq!(normalise_username("bad name!"), Err(UsernameProblem::Characters));
        assert_eq!(normalise_username(""), Err(UsernameProblem::Empty));
        assert_eq!(normalise_username(&"a".repeat(65)), Err(UsernameProblem::TooLong));
        assert_eq!(skeleton("adrnin"), skeleton("admin"));
        assert_eq!(skeleton("0perator"), skeleton("operator"));
        assert_eq!(skeleton("l1ly"), skeleton("llly"));
        assert_ne!(skeleton("ops1"), skeleton("ops2"));
    }
}
