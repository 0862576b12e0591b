//! Where an import reads its files: a folder on an SFTP server, or the folder of a managed
//! SFTP login on this install's own storage (`managed`).

use std::io::Read;
use std::path::PathBuf;

use russh_sftp::client::SftpSession;
use tokio::runtime::Handle;
use tokio_util::io::SyncIoBridge;

use crate::config::ImportConfig;
use crate::file::RemoteFile;
use crate::managed::UPLOAD_PREFIX;
use crate::unpack::Failing;

pub enum Folder {
    /// `folder` on the server of an open SFTP session.
    Sftp {
        session: SftpSession,
        folder: String,
    },
    /// A managed login's folder (already checked to lie inside it).
    Local(PathBuf),
}

impl Folder {
    /// The regular files the job reads, oldest first.
    pub async fn list(&self, config: &ImportConfig) -> Result<Vec<RemoteFile>, String> {
        let mut files = match self {
            Folder::Sftp { session, folder } => session
                .read_dir(folder.as_str())
                .await
                .map_err(|e| format!("listing the folder {folder:?} failed: {e}"))?
                .filter_map(|entry| {
                    let name = entry.file_name();
                    let meta = entry.metadata();
                    (meta.is_regular() && config.files.matches(&name)).then(|| RemoteFile {
                        path: format!("{}/{}", folder.trim_end_matches('/'), name),
                        size: meta.size.unwrap_or(0),
                        modified: i64::from(meta.mtime.unwrap_or(0)),
                        name,
                    })
                })
                .collect::<Vec<_>>(),
            Folder::Local(dir) => list_local(dir, config)?,
        };
        files.sort_by(|a, b| (a.modified, &a.name).cmp(&(b.modified, &b.name)));
        Ok(files)
    }

    /// Opens a listed file for reading on a blocking thread; a failure to open is reported by
    /// the reader's first read.
    pub fn open(&self, file: &RemoteFile, runtime: &Handle) -> Box<dyn Read + Send> {
        match self {
            Folder::Sftp { session, .. } => {
                match runtime.block_on(session.open(file.path.as_str())) {
                    Ok(f) => Box::new(SyncIoBridge::new_with_handle(f, runtime.clone())),
                    Err(e) => Box::new(Failing(format!("opening the file failed: {e}"))),
                }
            }
            Folder::Local(_) => match std::fs::File::open(&file.path) {
                Ok(f) => Box::new(f),
                Err(e) => Box::new(Failing(format!("opening the file failed: {e}"))),
            },
        }
    }
}

fn list_local(dir: &std::path::Path, config: &ImportConfig) -> Result<Vec<RemoteFile>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // A login that never uploaded has no folder yet: nothing to import.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("listing the managed folder failed: {e}")),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("listing the managed folder failed: {e}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Uploads still arriving, and anything that is not a plain file (no links followed).
        let Ok(meta) = entry.metadata() else { continue };
        if name.starts_with(UPLOAD_PREFIX) || !meta.is_file() || !config.files.matches(&name) {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        files.push(RemoteFile {
            path: entry.path().to_string_lossy().into_owned(),
            size: meta.len(),
            modified,
            name,
        });
    }
    Ok(files)
}
