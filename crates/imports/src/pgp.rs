//! PGP-encrypted files (`.gpg`, `.pgp`, `.asc`) of `sftp-pgp` authorizations, decrypted as
//! they stream, with the authorization's private key (rPGP). gpg compresses before it
//! encrypts, so a compressed message is inflated too.

use std::io::{BufReader, Read};

use pgp::composed::{Deserializable, Message, SignedSecretKey};
use pgp::types::Password;
use tributary_jobs::Credentials;

/// The private key (and its passphrase) an import decrypts with.
pub struct PgpKey {
    key: SignedSecretKey,
    passphrase: String,
}

impl PgpKey {
    /// The key of an `sftp-pgp` authorization. A public key is refused: it is for exports.
    pub fn from_credentials(credentials: &Credentials) -> Result<PgpKey, String> {
        let text = credentials
            .secrets
            .get("pgp_private_key")
            .ok_or("the authorization has no pgp_private_key")?;
        let passphrase = credentials
            .secrets
            .get("pgp_passphrase")
            .unwrap_or_default();
        PgpKey::from_armored(&text, passphrase)
    }

    /// An ASCII-armoured private key and its passphrase (empty for none).
    pub fn from_armored(text: &str, passphrase: String) -> Result<PgpKey, String> {
        if text.contains("BEGIN PGP PUBLIC KEY BLOCK") {
            return Err(
                "the key is a PGP public key, which encrypts exports; an import \
                        decrypts, so it needs the private key"
                    .into(),
            );
        }
        let (key, _) = SignedSecretKey::from_string(text)
            .map_err(|e| format!("not an ASCII-armoured PGP private key: {e}"))?;
        Ok(PgpKey { key, passphrase })
    }

    /// The plain bytes of an encrypted file read from `source`.
    pub fn decrypt(&self, source: Box<dyn Read + Send>) -> Result<Box<dyn Read + Send>, String> {
        let (message, _) = Message::from_reader(BufReader::new(Source(source)))
            .map_err(|e| format!("not a PGP message: {e}"))?;
        let password = Password::from(self.passphrase.as_str());
        let message = message.decrypt(&password, &self.key).map_err(|e| {
            format!("decrypting failed (is the file encrypted to this key, and the passphrase right?): {e}")
        })?;
        let message = if message.is_compressed() {
            message
                .decompress()
                .map_err(|e| format!("inflating the decrypted file failed: {e}"))?
        } else {
            message
        };
        Ok(Box::new(message))
    }
}

/// A file name without its PGP suffix, when it has one (`users.csv.gpg` → `users.csv`).
pub fn inner_name(name: &str) -> Option<&str> {
    let lower = name.to_ascii_lowercase();
    [".gpg", ".pgp", ".asc"]
        .iter()
        .find(|s| lower.ends_with(*s))
        .map(|s| &name[..name.len() - s.len()])
}

/// rPGP wants a `Debug` source.
struct Source(Box<dyn Read + Send>);

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Source")
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}
