//! `diff`: import only the rows that changed since the previous file. Each row is known by a
//! fingerprint of its content (the first 8 bytes of the SHA-256 of its JSON record); a file's
//! fingerprints are stored under its *generation* (a fingerprint of its name, size and
//! modification time) as its batches commit, and a row of the next file whose fingerprint the
//! previous file had is skipped. When a file is done, it becomes the previous file.

use sha2::{Digest, Sha256};

fn fingerprint(parts: &[&[u8]]) -> i64 {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// A row's fingerprint: equal rows (same columns, same values) have equal fingerprints.
pub fn row(payload: &str) -> i64 {
    fingerprint(&[payload.as_bytes()])
}

/// A file's generation.
pub fn generation(name: &str, size: i64, modified: i64) -> i64 {
    fingerprint(&[
        name.as_bytes(),
        &size.to_be_bytes(),
        &modified.to_be_bytes(),
    ])
}

/// What a file imported with `diff` compares against and records under.
#[derive(Debug, Clone, Copy)]
pub struct Diff {
    /// The previous file's generation (`None` for the job's first file: every row is new).
    pub baseline: Option<i64>,
    /// This file's.
    pub generation: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_rows_and_files_apart() {
        assert_eq!(row(r#"{"a":"1"}"#), row(r#"{"a":"1"}"#));
        assert_ne!(row(r#"{"a":"1"}"#), row(r#"{"a":"2"}"#));
        assert_ne!(generation("f.csv", 10, 5), generation("f.csv", 11, 5));
        assert_ne!(generation("f.csv", 10, 5), generation("f.csv", 10, 6));
        assert_ne!(generation("ab", 1, 1), generation("a", 1, 1));
    }
}
