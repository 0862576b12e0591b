//! The SFTP operations of a managed login, on its folder (`Jail`): list, read, upload,
//! rename, delete, make and remove folders. No symbolic links, no attributes changed (a
//! client's `setstat` is accepted and ignored, as uploads with `-p` send one).

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::PathBuf;

use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::jail::{Jail, Refused, UPLOAD_PREFIX};

/// Open handles a session may hold at once.
const MAX_HANDLES: usize = 64;
/// The most a single read returns (clients ask for 32-256 KiB).
const MAX_READ: u32 = 256 * 1024;
/// Entries per `readdir` answer.
const DIR_PAGE: usize = 256;

enum Open {
    /// A file opened to read, or to write in place (a resumed upload).
    File(tokio::fs::File),
    /// An upload: written to `temp`, renamed to `target` when closed.
    Upload {
        file: tokio::fs::File,
        temp: PathBuf,
        target: PathBuf,
    },
    /// A listing, sent in pages; `None` once sent.
    Dir(Option<Vec<File>>),
}

pub struct Files {
    jail: Jail,
    handles: HashMap<String, Open>,
    next_handle: u64,
}

fn refused(e: Refused) -> StatusReply {
    StatusReply::new(StatusCode::PermissionDenied).with_message(e.to_string())
}

fn io_error(e: std::io::Error) -> StatusReply {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        std::io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    StatusReply::new(code).with_message(e.to_string())
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

impl Files {
    pub fn new(jail: Jail) -> Files {
        Files {
            jail,
            handles: HashMap::new(),
            next_handle: 0,
        }
    }

    fn add(&mut self, open: Open) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(StatusReply::new(StatusCode::Failure)
                .with_message(format!("at most {MAX_HANDLES} files may be open at once")));
        }
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.handles.insert(handle.clone(), open);
        Ok(handle)
    }

    async fn attributes(&self, path: &str) -> Result<FileAttributes, StatusReply> {
        let real = self.jail.resolve(path).map_err(refused)?;
        let meta = tokio::fs::metadata(&real).await.map_err(io_error)?;
        Ok(FileAttributes::from(&meta))
    }

    async fn listing(&self, path: &str) -> Result<Vec<File>, StatusReply> {
        let real = self.jail.resolve(path).map_err(refused)?;
        let mut entries = tokio::fs::read_dir(&real).await.map_err(io_error)?;
        let mut files = vec![File::new(
            ".",
            FileAttributes::from(&tokio::fs::metadata(&real).await.map_err(io_error)?),
        )];
        while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(UPLOAD_PREFIX) {
                continue;
            }
            // A symbolic link put there by someone else is neither followed nor shown.
            match entry.metadata().await {
                Ok(meta) if !meta.file_type().is_symlink() => {
                    files.push(File::new(name, FileAttributes::from(&meta)));
                }
                _ => {}
            }
        }
        Ok(files)
    }
}

impl Drop for Files {
    /// Uploads the client never closed (a dropped connection) are not half-published.
    fn drop(&mut self) {
        for open in self.handles.values() {
            if let Open::Upload { temp, .. } = open {
                let _ = std::fs::remove_file(temp);
            }
        }
    }
}

impl russh_sftp::server::Handler for Files {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusReply::new(StatusCode::OpUnsupported)
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let path = Jail::virtual_path(&path).map_err(refused)?;
        Ok(Name {
            id,
            files: vec![File::dummy(path)],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs {
            id,
            attrs: self.attributes(&path).await?,
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat(id, path).await
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let meta = match self.handles.get(&handle) {
            Some(Open::File(f)) | Some(Open::Upload { file: f, .. }) => {
                f.metadata().await.map_err(io_error)?
            }
            _ => {
                return Err(StatusReply::new(StatusCode::Failure).with_message("not a file handle"));
            }
        };
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        self.jail.resolve(&path).map_err(refused)?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        _handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let files = self.listing(&path).await?;
        let handle = self.add(Open::Dir(Some(files)))?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let Some(Open::Dir(remaining)) = self.handles.get_mut(&handle) else {
            return Err(StatusReply::new(StatusCode::Failure).with_message("not a folder handle"));
        };
        match remaining.take() {
            Some(mut files) if !files.is_empty() => {
                let rest = files.split_off(files.len().min(DIR_PAGE));
                *remaining = Some(rest);
                Ok(Name { id, files })
            }
            _ => Err(StatusReply::new(StatusCode::Eof)),
        }
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let target = self.jail.resolve(&filename).map_err(refused)?;
        let open = if !pflags.contains(OpenFlags::WRITE) {
            Open::File(tokio::fs::File::open(&target).await.map_err(io_error)?)
        } else if target.exists() && !pflags.contains(OpenFlags::TRUNCATE) {
            if pflags.contains(OpenFlags::EXCLUDE) {
                return Err(StatusReply::new(StatusCode::Failure).with_message("the file exists"));
            }
            // Writing into an existing file (a resumed upload): in place.
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .read(true)
                .open(&target)
                .await
                .map_err(io_error)?;
            Open::File(file)
        } else {
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parent = target.parent().map(PathBuf::from).unwrap_or_default();
            let temp = parent.join(format!(
                "{UPLOAD_PREFIX}{:016x}-{name}",
                rand::random::<u64>()
            ));
            let file = tokio::fs::File::create(&temp).await.map_err(io_error)?;
            Open::Upload { file, temp, target }
        };
        let handle = self.add(open)?;
        Ok(Handle { id, handle })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let Some(Open::File(file)) = self.handles.get_mut(&handle) else {
            return Err(StatusReply::new(StatusCode::Failure).with_message("not a readable handle"));
        };
        file.seek(SeekFrom::Start(offset)).await.map_err(io_error)?;
        let mut data = vec![0u8; len.min(MAX_READ) as usize];
        let n = file.read(&mut data).await.map_err(io_error)?;
        if n == 0 {
            return Err(StatusReply::new(StatusCode::Eof));
        }
        data.truncate(n);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let file = match self.handles.get_mut(&handle) {
            Some(Open::Upload { file, .. }) | Some(Open::File(file)) => file,
            _ => {
                return Err(
                    StatusReply::new(StatusCode::Failure).with_message("not a writable handle")
                );
            }
        };
        file.seek(SeekFrom::Start(offset)).await.map_err(io_error)?;
        file.write_all(&data).await.map_err(io_error)?;
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(Open::Upload {
                mut file,
                temp,
                target,
            }) => {
                // Durable before it becomes visible: an import may start reading it at once.
                let published = async {
                    file.flush().await?;
                    file.sync_all().await?;
                    drop(file);
                    tokio::fs::rename(&temp, &target).await
                }
                .await;
                if let Err(e) = published {
                    let _ = tokio::fs::remove_file(&temp).await;
                    return Err(io_error(e));
                }
                Ok(ok(id))
            }
            Some(Open::File(mut file)) => {
                file.flush().await.map_err(io_error)?;
                Ok(ok(id))
            }
            Some(Open::Dir(_)) => Ok(ok(id)),
            None => Err(StatusReply::new(StatusCode::Failure).with_message("no such handle")),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let real = self.jail.resolve(&filename).map_err(refused)?;
        tokio::fs::remove_file(&real).await.map_err(io_error)?;
        Ok(ok(id))
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        let from = self.jail.resolve(&oldpath).map_err(refused)?;
        let to = self.jail.resolve(&newpath).map_err(refused)?;
        if from == self.jail.root() || to == self.jail.root() {
            return Err(refused(Refused::Escape));
        }
        tokio::fs::rename(&from, &to).await.map_err(io_error)?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let real = self.jail.resolve(&path).map_err(refused)?;
        tokio::fs::create_dir(&real).await.map_err(io_error)?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        let real = self.jail.resolve(&path).map_err(refused)?;
        if real == self.jail.root() {
            return Err(refused(Refused::Escape));
        }
        tokio::fs::remove_dir(&real).await.map_err(io_error)?;
        Ok(ok(id))
    }
}
