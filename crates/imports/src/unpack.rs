//! A file's bytes as CSV, by its name: decrypted first (`.gpg`, `.pgp`, `.asc`), then
//! unpacked (`.gz`, `.zip`), so `users.csv.gz.gpg` works. The one place both the import job
//! and `tributary import csv` read files through.

use std::io::Read;

use crate::pgp::{PgpKey, inner_name};

/// `raw`, decrypted and unpacked as `name` says. An encrypted file without a key is an error.
pub fn by_name(
    name: &str,
    raw: Box<dyn Read + Send>,
    pgp: Option<&PgpKey>,
) -> Result<Box<dyn Read + Send>, String> {
    let (name, plain) = match (inner_name(name), pgp) {
        (Some(inner), Some(key)) => (inner, key.decrypt(raw)?),
        (Some(_), None) => {
            return Err(format!(
                "{name} is PGP-encrypted; an sftp-pgp authorization with the private key reads it"
            ));
        }
        (None, _) => (name, raw),
    };
    let lower = name.to_ascii_lowercase();
    Ok(if lower.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(plain))
    } else if lower.ends_with(".zip") {
        crate::archive::first_csv_entry(plain)
    } else {
        plain
    })
}

/// Counts the bytes a reader passes (for progress: bytes read of the file's size).
pub struct Counted<R> {
    pub inner: R,
    pub read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A reader that fails with a message: what a decoder reads when a file could not be opened.
pub struct Failing(pub String);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other(self.0.clone()))
    }
}
