//! Every environment variable the product reads is a setting the README documents: no
//! undocumented switch (an experiment left behind, say) can change what Tributary does.
//! Test support (`testing.rs`, `tests/`) and the benchmark harness are outside the product.

use std::path::{Path, PathBuf};

/// The names in `env::var("NAME")`, `var_os("NAME")`, `from_env("NAME")` (tracing's filter)
/// and clap's `env = "NAME"` in `text`.
fn variables_read(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for marker in ["env::var(\"", "var_os(\"", "env = \"", "from_env(\""] {
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            if let Some(end) = rest.find('"') {
                names.push(rest[..end].to_string());
            }
        }
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "testing.rs")
        {
            out.push(path);
        }
    }
}

#[test]
fn every_variable_the_product_reads_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let mut files = Vec::new();
    for crate_dir in std::fs::read_dir(root.join("crates"))
        .expect("crates")
        .flatten()
    {
        if crate_dir.file_name() != "bench" {
            rust_files(&crate_dir.path().join("src"), &mut files);
        }
    }
    assert!(files.len() > 50, "found the sources: {}", files.len());
    let mut seen = 0;
    let mut undocumented = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for name in variables_read(&text) {
            seen += 1;
            if !readme.contains(&name) {
                undocumented.push(format!("{name} ({})", file.display()));
            }
        }
    }
    assert!(seen >= 5, "the scan finds the settings it knows of: {seen}");
    assert!(
        undocumented.is_empty(),
        "read by the product but not in README.md: {undocumented:?}"
    );
}

#[test]
fn the_scan_sees_each_form() {
    let text = r#"std::env::var("A_X"); std::env::var_os("B_Y"); #[arg(env = "C_Z")]
        EnvFilter::try_from_env("D_W")"#;
    assert_eq!(variables_read(text), ["A_X", "B_Y", "C_Z", "D_W"]);
}
