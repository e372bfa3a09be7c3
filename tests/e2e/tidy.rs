//! The source tree's house rules, checked like rust-analyzer's tidy test: every Rust
//! file opens with a `//!` paragraph saying what it owns, and no production file grows
//! past ~400 lines (a size a newcomer can hold in their head) unless it is named here
//! with why.

use std::path::{Path, PathBuf};

/// Production files allowed over [`MAX_LINES`], each with the reason it is one piece.
const LONG_FILES: &[(&str, &str)] = &[];

/// A production source file's length a reader can keep in mind.
const MAX_LINES: usize = 420;

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The workspace's Rust sources (crates and tests): path relative to the repo, text.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).expect("below").display().to_string();
            (rel, std::fs::read_to_string(&p).expect("read"))
        })
        .collect()
}

#[test]
fn every_source_file_opens_with_its_purpose() {
    let files = sources();
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<&str> = files
        .iter()
        .filter(|(_, text)| !text.starts_with("//! "))
        .map(|(rel, _)| rel.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` paragraph saying what they own: {missing:?}"
    );
}

#[test]
fn production_files_stay_small_enough_to_read() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|(rel, _)| {
            rel.starts_with("crates/")
                && rel.contains("/src/")
                && !rel.ends_with("/tests.rs")
                && !rel.contains("/tests/")
        })
        .filter(|(rel, text)| {
            text.lines().count() > MAX_LINES && !LONG_FILES.iter().any(|(f, _)| f == rel)
        })
        .map(|(rel, text)| format!("{rel}: {} lines", text.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "split these along their seams, or name them in LONG_FILES with why they are one piece: {long:?}"
    );
}
