//! The managed SFTP server (`sftp-managed` authorizations): Tributary's own SFTP endpoint,
//! started by `serve --sftp-listen`, where each authorization has a login and a folder.
//!
//! Logins: the username is generated with the authorization (`a{account}-{random}`); the
//! client proves itself with the authorization's `public_key` or its generated password (kept
//! sealed like every secret). Each login sees only its folder, `{root}/{username}` (`jail.rs`):
//! it may list, upload, rename and delete there, and nothing else: no shell, no commands, no
//! port forwarding. Uploads become visible under their name only once complete (`files.rs`),
//! so an import never reads half a file.
//!
//! Several nodes: the host key is derived from the master key, which nodes sharing a database
//! share, so every node shows the same key; the folders must be on storage every node mounts
//! (`--sftp-root`), since an upload lands on one node and the import may run on another.

mod files;
pub(crate) mod jail;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tributary_core::AuthKind;
use tributary_core::crypto::MasterKey;
use tributary_store::Store;

pub(crate) use jail::{Jail, UPLOAD_PREFIX};

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 256;
/// A failed login answers after this long, whatever failed (no timing oracle, slow guessing).
const REJECTION_DELAY: Duration = Duration::from_secs(1);
const INACTIVITY: Duration = Duration::from_secs(300);
/// Session channels a connection may hold open.
const MAX_CHANNELS: usize = 8;

/// What the server needs: where the folders are, and how to check a login.
#[derive(Clone)]
pub struct ManagedSftp {
    pub root: PathBuf,
    pub store: Arc<dyn Store>,
    pub master_key: Arc<MasterKey>,
}

/// The folder of a managed authorization's login.
pub fn folder_of(root: &Path, username: &str) -> Result<PathBuf, String> {
    let valid = username.len() <= 64
        && !username.is_empty()
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid {
        return Err(format!("{username:?} is not a managed SFTP username"));
    }
    Ok(root.join(username))
}

/// The server's host key: derived from the master key, so it survives restarts and is the
/// same on every node of a cluster.
fn host_key(master_key: &MasterKey) -> PrivateKey {
    let seed = master_key.derive("tributary managed sftp host key v1");
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

/// The host key's OpenSSH text (to pin it in a client's `known_hosts`).
pub fn host_public_key(master_key: &MasterKey) -> String {
    host_key(master_key)
        .public_key()
        .to_openssh()
        .unwrap_or_default()
}

/// Serves until `shutdown`; then stops accepting and ends every session.
pub async fn serve(
    listener: TcpListener,
    server: ManagedSftp,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let config = Arc::new(russh::server::Config {
        keys: vec![host_key(&server.master_key)],
        auth_rejection_time: REJECTION_DELAY,
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(INACTIVITY),
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey][..]),
        max_auth_attempts: 6,
        ..Default::default()
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut sessions = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "managed SFTP: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while sessions.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "managed SFTP: too many connections; closing this one");
            continue;
        };
        let handler = Login {
            server: server.clone(),
            peer,
            jail: None,
            channels: Default::default(),
        };
        let config = config.clone();
        sessions.spawn(async move {
            let _slot = slot;
            match russh::server::run_stream(config, socket, handler).await {
                Ok(session) => {
                    if let Err(e) = session.await {
                        tracing::debug!(%peer, error = %e, "managed SFTP session ended");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "managed SFTP handshake failed"),
            }
        });
    }
    sessions.shutdown().await;
}

/// One connection: who logged in, and their folder.
struct Login {
    server: ManagedSftp,
    peer: SocketAddr,
    jail: Option<jail::Jail>,
    /// Session channels opened and not yet given a subsystem.
    channels: std::collections::HashMap<ChannelId, Channel<Msg>>,
}

/// The managed authorization a username belongs to (`a{account}-...`).
async fn find(server: &ManagedSftp, user: &str) -> Option<tributary_core::Authorization> {
    let account = user.strip_prefix('a')?.split('-').next()?.parse().ok()?;
    let all = server.store.authorizations(account).await.ok()?;
    all.into_iter()
        .find(|a| a.kind == AuthKind::SftpManaged && a.config["username"].as_str() == Some(user))
}

/// Byte-wise comparison in time independent of where the texts differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Login {
    /// Opens the login's folder (made on first login).
    fn admit(&mut self, user: &str) -> Result<Auth, std::io::Error> {
        let folder = folder_of(&self.server.root, user).map_err(std::io::Error::other)?;
        std::fs::create_dir_all(&folder)?;
        self.jail = Some(jail::Jail::new(&folder)?);
        tracing::info!(peer = %self.peer, user, "managed SFTP login");
        Ok(Auth::Accept)
    }

    fn reject(&self, user: &str, method: &str) -> Auth {
        tracing::info!(peer = %self.peer, user, method, "managed SFTP login refused");
        Auth::reject()
    }
}

impl russh::server::Handler for Login {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let Some(auth) = find(&self.server, user).await else {
            return Ok(self.reject(user, "password"));
        };
        let expected = tributary_jobs::authorization::open(&self.server.master_key, &auth)
            .ok()
            .and_then(|s| s.get("password"));
        match expected {
            Some(p) if same_secret(p.as_bytes(), password.as_bytes()) => {
                self.admit(user).map_err(russh::Error::from)
            }
            _ => Ok(self.reject(user, "password")),
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some(auth) = find(&self.server, user).await else {
            return Ok(self.reject(user, "publickey"));
        };
        let registered = auth.config["public_key"]
            .as_str()
            .and_then(|k| PublicKey::from_openssh(k.trim()).ok());
        match registered {
            Some(k) if k.key_data() == key.public_key.key_data() => {
                self.admit(user).map_err(russh::Error::from)
            }
            _ => Ok(self.reject(user, "publickey")),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.jail.is_none() || self.channels.len() >= MAX_CHANNELS {
            // Dropping the handle refuses the channel.
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.channels.remove(&channel), &self.jail) {
            ("sftp", Some(open), Some(jail)) => {
                session.channel_success(channel)?;
                russh_sftp::server::run(open.into_stream(), files::Files::new(jail.clone())).await;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    /// No shell and no commands: this server only speaks SFTP.
    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        session.close(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        session.close(channel)
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        session.close(channel)
    }
}
