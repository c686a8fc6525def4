//! The README's error reference cannot fall behind the code: every error
//! code the source can answer with is listed there.

use std::path::Path;

/// Every `"snake_case"` literal that follows `prefix` (whitespace and line
/// breaks allowed in between) in the Rust files under `dir`.
fn literals_after(dir: &Path, prefix: &str, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            literals_after(&path, prefix, found);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices(prefix) {
            let rest = text[at + prefix.len()..].trim_start();
            let Some(rest) = rest.strip_prefix('"') else { continue };
            let literal = rest.split('"').next().unwrap_or_default();
            if !literal.is_empty() && literal.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                found.push(literal.to_owned());
            }
        }
    }
}

#[test]
fn readme_lists_every_error_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut codes = Vec::new();
    for dir in ["src", "crates/chantra-core/src"] {
        // AppError::bad_request("code", …), Conflict { code: "…" }, json!({ "code": "…" }).
        for prefix in ["bad_request(", "code:", "\"code\":"] {
            literals_after(&root.join(dir), prefix, &mut codes);
        }
    }
    // AppError::code(): one `Variant => "code"` arm per fixed code.
    let error_rs = std::fs::read_to_string(root.join("crates/chantra-core/src/error.rs")).unwrap();
    let body = error_rs.split("pub fn code(&self)").nth(1).unwrap().split("pub fn status").next().unwrap();
    for arm in body.split("=> \"").skip(1) {
        codes.push(arm.split('"').next().unwrap().to_owned());
    }
    codes.sort();
    codes.dedup();
    assert!(codes.len() > 40, "the scan finds the codes: {codes:?}");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let errors = readme.split("### Errors").nth(1).expect("README has an Errors section");
    let errors = errors.split("\n## ").next().unwrap();
    let missing: Vec<&String> = codes.iter().filter(|code| !errors.contains(&format!("`{code}`"))).collect();
    assert!(missing.is_empty(), "README's Errors section lacks {missing:?}");
}
