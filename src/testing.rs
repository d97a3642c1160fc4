//! Shared by the modules' tests: bounded property-test settings, and the crate-wide check that
//! there is no `unsafe` of our own.

use proptest::test_runner::Config;

/// `n` cases, no failure files written. Shrinking is capped: with RUST_BACKTRACE set, every panic
/// while shrinking symbolicates a backtrace, and an uncapped search through a panicking decoder
/// takes minutes.
pub fn cases(n: u32) -> Config {
    Config { cases: n, failure_persistence: None, max_shrink_iters: 256, max_shrink_time: 3_000, ..Config::default() }
}

// "No `unsafe` of our own": the crate denies `unsafe_code` (which also covers `no_mangle`,
// `export_name` and `link_section`), and nothing in `src/` turns that off again. napi-rs's macros
// generate their own `unsafe` and allow it locally, inside their expansion only.
#[test]
fn the_crate_denies_unsafe_code_and_nothing_allows_it() {
    use std::fs;
    use std::path::{Path, PathBuf};
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    assert!(
        lib.contains("#![deny(unsafe_code)]") || lib.contains("#![forbid(unsafe_code)]"),
        "src/lib.rs must deny unsafe_code"
    );
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 5);
    // Spelled in two pieces so this file does not trip its own check.
    let (allow, word) = (concat!("allow(", "unsafe_code)"), concat!("un", "safe"));
    for f in files {
        let text = fs::read_to_string(&f).expect("read");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            assert!(!code.contains(allow), "{}:{} allows {word} code", f.display(), n + 1);
            let words = code.split(|c: char| !c.is_alphanumeric() && c != '_');
            assert!(!words.into_iter().any(|w| w == word), "{}:{} uses {word}: {line}", f.display(), n + 1);
        }
    }
}
