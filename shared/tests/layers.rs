//! The layers of `src/` hold: each file imports only from the layers its folder's rule allows (the
//! rule is written at the top of each layer's `mod.rs` and in `lib.rs`), so no import runs back up
//! and no cycle can form between layers. Test modules (`#[cfg(test)] mod tests`) are left out: a
//! test may use the test support of any layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layer of a file: its folder under `src/`, or its own name at the top.
fn layer_of(relative: &Path) -> String {
    let mut parts = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = parts.next().unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// What each layer may import (besides itself).
fn allowed(layer: &str) -> Option<&'static [&'static str]> {
    Some(match layer {
        "error" => &[],
        "domain" => &["error"],
        "ports" => &["domain", "error"],
        "messages" => &["domain", "ports", "error"],
        "config" => &["domain", "ports", "error"],
        "usecases" => &["domain", "ports", "messages", "error"],
        "adapters" => &["domain", "ports", "messages", "error"],
        "inbound" => &["domain", "ports", "messages", "usecases", "config", "error"],
        "wiring" => &["domain", "ports", "messages", "usecases", "config", "adapters", "inbound", "error"],
        "testing" | "lib" => {
            &["domain", "ports", "messages", "usecases", "config", "adapters", "inbound", "wiring", "error"]
        }
        _ => return None,
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without its test modules (`#[cfg(test)] mod …`), which by convention close the file.
fn without_tests(source: &str) -> &str {
    let mut at = 0;
    for line in source.split_inclusive('\n') {
        if line.trim() == "#[cfg(test)]" && source[at + line.len()..].trim_start().starts_with("mod ") {
            return &source[..at];
        }
        at += line.len();
    }
    source
}

/// Every top-level module named after `crate::` (in `use` lines and in qualified paths).
fn crate_references(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name.chars().next().is_some_and(|c| c.is_lowercase()) {
                out.push((n + 1, name));
            }
        }
        // `use crate::{a::B, c::D}`: each name in the group is a module.
        if let Some(group) = code.trim_start().strip_prefix("use crate::{") {
            for item in group.split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name.chars().next().is_some_and(|c| c.is_lowercase()) {
                    out.push((n + 1, name));
                }
            }
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_file_imports_only_what_its_layer_allows() {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 40, "the source tree was found ({} files)", files.len());
    let mut broken: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&root).expect("under src/").to_path_buf();
        let layer = layer_of(&relative);
        let allowed = allowed(&layer).unwrap_or_else(|| panic!("{} is in no known layer", relative.display()));
        let source = std::fs::read_to_string(&file).expect("readable source");
        for (line, target) in crate_references(without_tests(&source)) {
            // `crate::Result` / `crate::Error` are re-exports of `error`.
            let target = if target == "Result" || target == "Error" { "error".to_owned() } else { target };
            if target != layer && !allowed.contains(&target.as_str()) {
                broken
                    .entry(format!("{} ({layer})", relative.display()))
                    .or_default()
                    .push(format!("line {line}: imports {target}"));
            }
        }
    }
    assert!(broken.is_empty(), "imports that break a layer's rule:\n{broken:#?}");
}

#[test]
fn the_domain_does_no_io_and_reads_no_clock() {
    let root = src().join("domain");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let forbidden = ["tokio", "reqwest", "std::fs", "std::env", "std::net", "now_utc", "SystemTime", "async_trait"];
    let mut found = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("readable source");
        for word in forbidden {
            if without_tests(&source).contains(word) {
                found.push(format!("{}: {word}", file.strip_prefix(&root).expect("under domain/").display()));
            }
        }
    }
    assert!(found.is_empty(), "the domain must stay pure: {found:?}");
}

#[test]
fn each_layer_states_its_rule_at_the_top_of_its_module() {
    for layer in ["domain", "ports", "usecases", "adapters", "inbound", "config", "testing"] {
        let path = src().join(layer).join("mod.rs");
        let source = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{layer}/mod.rs exists"));
        let head: String = source.lines().take_while(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n");
        assert!(head.contains("Layer rule"), "{layer}/mod.rs opens with its layer rule");
    }
}

#[test]
fn the_layer_check_sees_a_broken_rule() {
    // The checker itself: an adapter naming a use case is caught, in a use line and in a path.
    let source = "use crate::usecases::app::App;\nfn f() { crate::inbound::handlers::x(); }\n";
    let names: Vec<String> = crate_references(source).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["usecases", "inbound"]);
    let grouped: Vec<String> =
        crate_references("use crate::{domain::ids::X, wiring::y};").into_iter().map(|(_, n)| n).collect();
    assert!(grouped.contains(&"wiring".to_owned()) && grouped.contains(&"domain".to_owned()));
    assert!(!allowed("adapters").unwrap_or_default().contains(&"usecases"));
}
