//! The crate-level dependency rules of ARCHITECTURE.md ("Dependency rules"), checked from `cargo metadata`, and
//! the purity of the model crate, checked in its source.
//!
//! Each rule names a crate and the packages it must not depend on (or, for the model, the only ones it may);
//! a failure names the crate, the forbidden dependency and the rule. Only normal dependencies count, except for
//! the model, whose dev-dependencies must keep its rule as well. This test deliberately does not check imports
//! between modules inside a crate, nor what a crate's dependencies depend on in turn.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A package's dependencies as `cargo metadata` lists them: (package name, kind), kind `None` for normal.
type Deps = Vec<(String, Option<String>)>;

const ROOT: &str = "waterworks";
const MODEL: &str = "waterworks-model";
const DRIVERS: &str = "waterworks-drivers";
const SIM: &str = "waterworks-sim";
const ACTORS: &str = "waterworks-actors";
const HMI: &str = "waterworks-hmi";

/// Everything the model crate may depend on (rule a).
const MODEL_ALLOWED: [&str; 4] = ["serde", "serde_json", "thiserror", "rust_decimal"];

/// The crates that must not depend on the listed packages, with the rule's text (normal dependencies).
const FORBIDDEN: [(&str, &[&str], &str); 4] = [
    (
        DRIVERS,
        &[MODEL, ACTORS, HMI, SIM, "axum"],
        "(b) drivers speaks protocols only: it never depends on the model, the actors, the HMI, the simulators, nor axum",
    ),
    (SIM, &[ACTORS, HMI, MODEL], "(c) the simulators never depend on the actors, the HMI or the model"),
    (ACTORS, &[HMI, SIM, "toml", "clap", "axum"], "(d) actors never depend on the HMI, the simulators, toml, clap or axum"),
    (HMI, &[DRIVERS, SIM, "toml", "clap"], "(e) the HMI never depends on drivers, the simulators, toml or clap"),
];

/// Only the root package may depend on these (rule f).
const ROOT_ONLY: [&str; 2] = ["toml", "clap"];

/// Words no code of the model crate may contain: no runtime, no clock, no I/O.
const IMPURE: [&str; 6] = ["tokio", "ractor", "std::time::SystemTime", "Instant::now", "std::fs", "std::net"];

/// The workspace's packages and their dependencies, from `cargo metadata --no-deps`.
fn workspace() -> BTreeMap<String, Deps> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo metadata: {e}"));
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("cargo metadata lists packages");
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("a package has a name").to_owned();
            let deps = p["dependencies"]
                .as_array()
                .expect("a package lists its dependencies")
                .iter()
                .map(|d| {
                    let dep = d["name"].as_str().expect("a dependency has a package name").to_owned();
                    (dep, d["kind"].as_str().map(str::to_owned))
                })
                .collect();
            (name, deps)
        })
        .collect()
}

/// The normal dependencies of `name`, failing if the workspace has no such package (a renamed crate must not
/// make its rule pass for want of a crate to check).
fn normal<'a>(packages: &'a BTreeMap<String, Deps>, name: &str) -> Vec<&'a str> {
    let deps = packages.get(name).unwrap_or_else(|| panic!("the workspace has no package {name}"));
    deps.iter().filter(|(_, kind)| kind.is_none()).map(|(d, _)| d.as_str()).collect()
}

/// The broken rules, one line each; empty when every rule holds.
fn broken_rules(packages: &BTreeMap<String, Deps>) -> Vec<String> {
    let mut broken = Vec::new();
    let model = packages.get(MODEL).unwrap_or_else(|| panic!("the workspace has no package {MODEL}"));
    for (dep, kind) in model {
        if !MODEL_ALLOWED.contains(&dep.as_str()) {
            let kind = kind.as_deref().unwrap_or("normal");
            broken.push(format!(
                "{MODEL} depends on {dep} ({kind}): rule (a) the model is pure and depends only on {MODEL_ALLOWED:?}"
            ));
        }
    }
    for (krate, forbidden, rule) in FORBIDDEN {
        for dep in normal(packages, krate) {
            if forbidden.contains(&dep) {
                broken.push(format!("{krate} depends on {dep}: rule {rule}"));
            }
        }
    }
    for name in packages.keys().filter(|n| n.as_str() != ROOT) {
        for dep in normal(packages, name) {
            if ROOT_ONLY.contains(&dep) {
                broken.push(format!(
                    "{name} depends on {dep}: rule (f) only the root package {ROOT} knows the config format and the CLI"
                ));
            }
        }
    }
    broken
}

#[test]
fn crates_keep_the_dependency_rules() {
    let packages = workspace();
    for krate in [ROOT, MODEL, DRIVERS, SIM, ACTORS, HMI] {
        assert!(packages.contains_key(krate), "the workspace has no package {krate}: update the rules");
    }
    let broken = broken_rules(&packages);
    assert!(
        broken.is_empty(),
        "dependency rules broken (ARCHITECTURE.md, \"Dependency rules\"):\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_rules_catch_a_forbidden_dependency() {
    // The checker itself: the real workspace with tokio added to the model and axum to drivers.
    let mut packages = workspace();
    packages.get_mut(MODEL).expect("model package").push(("tokio".to_owned(), Some("dev".to_owned())));
    packages.get_mut(DRIVERS).expect("drivers package").push(("axum".to_owned(), None));
    packages.get_mut(HMI).expect("hmi package").push(("toml".to_owned(), None));
    let broken = broken_rules(&packages);
    assert!(broken.iter().any(|b| b.starts_with("waterworks-model depends on tokio (dev): rule (a)")), "{broken:?}");
    assert!(broken.iter().any(|b| b.starts_with("waterworks-drivers depends on axum: rule (b)")), "{broken:?}");
    assert!(broken.iter().any(|b| b.starts_with("waterworks-hmi depends on toml: rule (e)")), "{broken:?}");
    assert!(broken.iter().any(|b| b.starts_with("waterworks-hmi depends on toml: rule (f)")), "{broken:?}");
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())).path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The impure words in `source`, as `line: word`; comments (which may say what the code does not do) are skipped.
fn impure_lines(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for word in IMPURE.iter().filter(|w| code.contains(*w)) {
            found.push(format!("{}: {word}", n + 1));
        }
    }
    found
}

#[test]
fn the_model_source_has_no_clock_and_no_io() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("actors/model/src");
    let files = rust_files(&dir);
    assert!(!files.is_empty(), "no source files under {}", dir.display());
    let mut found = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        found.extend(impure_lines(&source).into_iter().map(|l| format!("{}:{l}", file.display())));
    }
    assert!(found.is_empty(), "the model crate must stay pure (no runtime, no clock, no I/O):\n{}", found.join("\n"));
}

#[test]
fn the_source_check_sees_code_and_skips_comments() {
    let source = "//! No tokio here.\nuse std::fs::File; // not allowed\nlet t = Instant::now();\n";
    assert_eq!(impure_lines(source), vec!["2: std::fs".to_owned(), "3: Instant::now".to_owned()]);
}

/// Where the concrete store is named in `source` (issue 7 §3: actors reach the store through its per-domain
/// interfaces, so a second backend needs no actor changed): `redb`, or the type `Store` in a `use` of the store
/// module, in a path (`Store::open`), or as a type (`: Store`, `&Store`, `<Store>`). Comments and the code after
/// the first `#[cfg(test)]` (tests may open a real store) are skipped; `Store` as an enum variant
/// (`ResetError::Store(…)`) is not the type.
fn concrete_store_lines(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        let word_at = |i: usize| {
            let before = code[..i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            let after = code[i + 5..].chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            before && after
        };
        let named = code.match_indices("Store").any(|(i, _)| {
            word_at(i) && {
                let rest = &code[i + 5..];
                let head = code[..i].trim_end();
                rest.starts_with("::")
                    || head.ends_with(':') && !head.ends_with("::")
                    || head.ends_with('&')
                    || head.ends_with('<')
                    || code.trim_start().starts_with("use ") && code.contains("store::")
            }
        });
        if code.contains("redb") || named {
            found.push(format!("{}: {}", n + 1, line.trim()));
        }
    }
    found
}

#[test]
fn only_the_store_module_and_the_composition_root_name_the_redb_store() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store_dir = root.join("actors/src/store");
    let mut files = rust_files(&root.join("actors/src"));
    files.extend(rust_files(&root.join("hmi/src")));
    assert!(files.len() > 20, "too few source files found: {}", files.len());
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&store_dir)) {
        if file.file_name().is_some_and(|n| n.to_string_lossy().ends_with("_tests.rs")) {
            continue;
        }
        let source = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        found.extend(concrete_store_lines(&source).into_iter().map(|l| format!("{}:{l}", file.display())));
    }
    assert!(
        found.is_empty(),
        "outside actors/src/store the store is reached through its interfaces (store::ports), not the redb type:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_store_check_sees_the_type_and_not_a_variant() {
    let source = "use crate::store::{Op, Store};\nfn f(s: &Store) {}\nlet s: Store = x;\nlet t = Store::open(p);\n\
                  Store(String),\nErr(ResetError::Store(e)) // a Store here\nlet a: Arc<dyn FieldStore> = b;\n\
                  let db = redb::Database::create(p);\n#[cfg(test)]\nlet s = Store::open(p);\n";
    assert_eq!(
        concrete_store_lines(source),
        vec![
            "1: use crate::store::{Op, Store};".to_owned(),
            "2: fn f(s: &Store) {}".to_owned(),
            "3: let s: Store = x;".to_owned(),
            "4: let t = Store::open(p);".to_owned(),
            "8: let db = redb::Database::create(p);".to_owned(),
        ]
    );
}
