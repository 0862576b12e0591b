//! The SFTP client: one SSH connection per run, authenticated by password or private key,
//! the server's host key checked against the pinned or first-seen one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle, Handler};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate, decode_secret_key};
use russh_sftp::client::SftpSession;
use tributary_jobs::Credentials;

/// How long a connection may stay silent before it counts as dropped.
const INACTIVITY: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to connect and as whom; the secrets stay in `Credentials`.
pub struct Target<'a> {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub credentials: &'a Credentials,
}

impl<'a> Target<'a> {
    pub fn from_credentials(credentials: &'a Credentials) -> Result<Target<'a>, String> {
        let text = |name: &str| credentials.config.get(name).and_then(|v| v.as_str());
        let host = text("host")
            .ok_or("the authorization has no host")?
            .to_string();
        let username = text("username")
            .ok_or("the authorization has no username")?
            .to_string();
        let port = match credentials.config.get("port") {
            None | Some(serde_json::Value::Null) => 22,
            Some(p) => p
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or("the authorization's port is not a port number")?,
        };
        Ok(Target {
            host,
            port,
            username,
            credentials,
        })
    }
}

/// Checks the server's key: against `expected` when one is known, and records what was seen.
struct HostKeyCheck {
    expected: Option<PublicKey>,
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        shown: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // A certificate's key is checked as the key itself: there is no CA to trust here.
        let key = shown.public_key();
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(key.clone());
        }
        Ok(self
            .expected
            .as_ref()
            .is_none_or(|e| e.key_data() == key.key_data()))
    }
}

/// An open SFTP session and the host key the server showed (OpenSSH text).
pub struct Connection {
    pub sftp: SftpSession,
    pub host_key: String,
    _ssh: Handle<HostKeyCheck>,
}

/// Parses an OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
fn parse_host_key(text: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(text.trim())
        .map_err(|e| format!("the pinned host key is not an OpenSSH public key: {e}"))
}

/// Connects, checks the host key against `pinned` (the authorization's `host_key`, else the key
/// this job saw first), logs in and opens SFTP. Errors say what failed, never a secret.
pub async fn connect(target: &Target<'_>, pinned: Option<&str>) -> Result<Connection, String> {
    let expected = pinned.map(parse_host_key).transpose()?;
    let seen = Arc::new(Mutex::new(None));
    let check = HostKeyCheck {
        expected,
        seen: seen.clone(),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(INACTIVITY),
        ..client::Config::default()
    });
    let address = (target.host.as_str(), target.port);
    let connecting = client::connect(config, address, check);
    let mut ssh = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => {
            return Err(format!(
                "connecting to {}:{} timed out after {} s",
                target.host,
                target.port,
                CONNECT_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(russh::Error::UnknownKey)) => {
            return Err(format!(
                "the host key of {}:{} is not the one this job trusts (it changed, or the \
                 authorization's host_key is another): refusing to connect",
                target.host, target.port
            ));
        }
        Ok(Err(e)) => {
            return Err(format!(
                "connecting to {}:{} failed: {e}",
                target.host, target.port
            ));
        }
        Ok(Ok(ssh)) => ssh,
    };
    let host_key = seen
        .lock()
        .ok()
        .and_then(|k| k.as_ref().and_then(|k| k.to_openssh().ok()))
        .ok_or("the server showed no host key")?;
    authenticate(&mut ssh, target).await?;
    let channel = ssh
        .channel_open_session()
        .await
        .map_err(|e| format!("opening an SSH channel failed: {e}"))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| format!("the server refused the SFTP subsystem: {e}"))?;
    let sftp = SftpSession::new(channel.into_stream())
        .await
        .map_err(|e| format!("starting SFTP failed: {e}"))?;
    Ok(Connection {
        sftp,
        host_key,
        _ssh: ssh,
    })
}

async fn authenticate(ssh: &mut Handle<HostKeyCheck>, target: &Target<'_>) -> Result<(), String> {
    let secrets = &target.credentials.secrets;
    let user = target.username.as_str();
    let result = if let Some(key_text) = secrets.get("private_key") {
        if key_text.trim_start().starts_with("PuTTY-User-Key-File") {
            return Err("the private key is in PuTTY's format; convert it to OpenSSH's \
                        (puttygen key.ppk -O private-openssh -o key) and save the authorization again"
                .into());
        }
        let key = decode_secret_key(&key_text, None).map_err(|e| {
            format!("the private key cannot be read (it must be unencrypted OpenSSH text): {e}")
        })?;
        let hash = ssh
            .best_supported_rsa_hash()
            .await
            .map_err(|e| format!("SSH negotiation failed: {e}"))?
            .flatten();
        ssh.authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
    } else if let Some(password) = secrets.get("password") {
        ssh.authenticate_password(user, password).await
    } else {
        return Err("the authorization has neither a password nor a private key".into());
    };
    match result {
        Ok(r) if r.success() => Ok(()),
        Ok(_) => Err(format!(
            "the server refused the login of {user:?} (wrong password or key)"
        )),
        Err(e) => Err(format!("logging in failed: {e}")),
    }
}
