//! The one way config tests are written: `check(text, expect)` parses `text` as `test.toml` and asserts that
//! each expected fragment is in some reported problem; `warnings(text)` gives the warnings of a valid text.
//! Test-only; shared by the tests of every section module.

use super::parse;

/// A small valid configuration that tests extend.
pub(super) const MINIMAL: &str = r#"
[[region]]
id = "r1"
[[region.concentrator]]
id = "c1"
address = "10.0.0.5:502"
model = "ww-concentrator-v1"
meters = ["M1", "M2"]
"#;

/// Every error reported for `text`, one line each (empty when it is valid).
pub(super) fn problems(text: &str) -> Vec<String> {
    match parse("test.toml", text, None) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|p| p.to_string()).collect(),
    }
}

/// Asserts that each of `expect` is part of some problem reported for `text`.
pub(super) fn check(text: &str, expect: &[&str]) {
    let got = problems(text);
    for e in expect {
        assert!(got.iter().any(|g| g.contains(e)), "expected a problem containing {e:?}, got {got:#?}");
    }
}

/// The warnings of a valid `text`, one line each.
pub(super) fn warnings(text: &str) -> Vec<String> {
    match parse("test.toml", text, None) {
        Ok(c) => c.warnings.iter().map(|p| p.to_string()).collect(),
        Err(e) => panic!("{e}"),
    }
}
