//! What Tributary writes holds personal data, token hashes and sealed secrets: only the user
//! that runs it may read it. The data dir is 0700, and every file the process creates (the
//! databases, their WAL and shared-memory files, the master key) is 0600, whatever the umask
//! the process was started with.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Files the process creates from now on are readable and writable by its user only.
pub fn restrict_new_files() {
    // SAFETY: umask only sets the process's file-mode creation mask; it cannot fail and
    // touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates the data dir 0700 (its parents too), or tightens an existing one to 0700, and
/// tightens files an earlier version left readable by others.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting the data dir {}", dir.display()))?;
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the data dir {}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
            tracing::warn!(file = %path.display(), "was readable by other users; now 0600");
        }
    }
    Ok(())
}
