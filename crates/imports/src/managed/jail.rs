//! A login's folder as the whole file system: the paths an SFTP client sends are read as
//! paths inside the folder (`/` is the folder), and none leads out of it.
//!
//! Three ways out are closed: `..` above the folder is refused (not clamped, so the client
//! sees a clear "permission denied"), absolute paths are read inside the folder, and a path
//! whose real location (symbolic links followed) is outside the folder is refused; the
//! server itself never makes symbolic links.

use std::path::{Path, PathBuf};

/// Uploads are written under this prefix and renamed into place when the client closes
/// the file, so an import never reads a file that is still arriving. Hidden from listings.
pub const UPLOAD_PREFIX: &str = ".tributary-upload-";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the path leads outside your folder")]
    Escape,
    #[error("the name is reserved for uploads in progress")]
    Reserved,
    #[error("the path contains a NUL byte")]
    Nul,
}

#[derive(Debug, Clone)]
pub struct Jail {
    /// The folder, canonical (symbolic links in the configured root resolved once).
    root: PathBuf,
}

impl Jail {
    /// `root` must exist.
    pub fn new(root: &Path) -> std::io::Result<Jail> {
        Ok(Jail {
            root: std::fs::canonicalize(root)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The normalized path as the client sees it (`/`, `/a/b`), without touching the disk.
    pub fn virtual_path(path: &str) -> Result<String, Refused> {
        if path.contains('\0') {
            return Err(Refused::Nul);
        }
        let mut parts: Vec<&str> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop().ok_or(Refused::Escape)?;
                }
                name if name.starts_with(UPLOAD_PREFIX) => return Err(Refused::Reserved),
                name => parts.push(name),
            }
        }
        Ok(format!("/{}", parts.join("/")))
    }

    /// The real path of a client's path, checked to stay inside the folder once symbolic
    /// links are followed (for a path that does not exist yet, its parent is checked).
    pub fn resolve(&self, path: &str) -> Result<PathBuf, Refused> {
        let virtual_path = Self::virtual_path(path)?;
        let real = self.root.join(virtual_path.trim_start_matches('/'));
        let checked = match std::fs::canonicalize(&real) {
            Ok(c) => c,
            // Not there (yet): what matters is where its parent really is.
            Err(_) => match real.parent().map(std::fs::canonicalize) {
                Some(Ok(parent)) => parent,
                _ => return Ok(real),
            },
        };
        if checked.starts_with(&self.root) {
            Ok(real)
        } else {
            Err(Refused::Escape)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_inside_the_folder() {
        assert_eq!(Jail::virtual_path("").unwrap(), "/");
        assert_eq!(Jail::virtual_path(".").unwrap(), "/");
        assert_eq!(Jail::virtual_path("/etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(Jail::virtual_path("a/./b/../c").unwrap(), "/a/c");
        assert_eq!(Jail::virtual_path("..").unwrap_err(), Refused::Escape);
        assert_eq!(
            Jail::virtual_path("/a/../../b").unwrap_err(),
            Refused::Escape
        );
        assert_eq!(
            Jail::virtual_path("x/.tributary-upload-1-y").unwrap_err(),
            Refused::Reserved
        );
        assert_eq!(Jail::virtual_path("a\0b").unwrap_err(), Refused::Nul);
    }

    #[test]
    fn a_symbolic_link_out_of_the_folder_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        let jail = Jail::new(dir.path()).unwrap();
        assert_eq!(jail.resolve("/out/secret").unwrap_err(), Refused::Escape);
        assert_eq!(jail.resolve("out/new-file").unwrap_err(), Refused::Escape);
        assert_eq!(jail.resolve("/out").unwrap_err(), Refused::Escape);
        assert!(jail.resolve("/in/new-file").is_ok());
        assert_eq!(
            jail.resolve("/etc/passwd").unwrap(),
            jail.root().join("etc/passwd")
        );
    }
}
