//! The master key that seals authorization secrets: `TRIBUTARY_MASTER_KEY` (64 hex digits),
//! or `master.key` in the data dir, created with mode 0600 on first start. Several nodes on
//! one PostgreSQL database must share it (set the variable on each).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use tributary_core::crypto::MasterKey;

pub const KEY_FILE: &str = "master.key";

pub fn load(data_dir: &Path) -> anyhow::Result<MasterKey> {
    if let Ok(text) = std::env::var("TRIBUTARY_MASTER_KEY")
        && !text.is_empty()
    {
        return MasterKey::from_hex(&text)
            .map_err(|e| anyhow::anyhow!("TRIBUTARY_MASTER_KEY: {e}"));
    }
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mode = std::fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                );
            }
            MasterKey::from_hex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(key.to_hex().as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "generated the master key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The variable would take precedence; these tests never set it.
        let first = load(dir.path()).expect("generated");
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load(dir.path()).expect("reused");
        let sealed = first.seal(b"x", "c");
        assert_eq!(&*again.open(&sealed, "c").expect("same key"), b"x");
        std::fs::set_permissions(
            dir.path().join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let refused = load(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("chmod 600"), "{refused}");
    }
}
