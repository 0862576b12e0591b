//! Secrets at rest: XChaCha20-Poly1305 under the install's master key, with a random 24-byte
//! nonce per seal (large enough that random nonces never repeat in practice). The associated
//! data binds a sealed value to where it belongs (account and authorization kind), so a
//! ciphertext copied to another row does not open.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use rand::RngCore;
use zeroize::Zeroizing;

const NONCE_BYTES: usize = 24;
pub const KEY_BYTES: usize = 32;

/// The master key. No `Debug`, no `Display`: it is never printed; zeroed on drop.
pub struct MasterKey(Zeroizing<[u8; KEY_BYTES]>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the master key must be 64 hexadecimal digits (32 bytes)")]
    BadKey,
    #[error(
        "a sealed secret does not open with this master key (wrong key, or the data was altered)"
    )]
    Open,
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        rand::rng().fill_bytes(key.as_mut());
        MasterKey(key)
    }

    /// From the hexadecimal text of `TRIBUTARY_MASTER_KEY` or the key file.
    pub fn from_hex(text: &str) -> Result<MasterKey, CryptoError> {
        let text = text.trim();
        if text.len() != KEY_BYTES * 2 {
            return Err(CryptoError::BadKey);
        }
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or(CryptoError::BadKey)?, 16)
                .map_err(|_| CryptoError::BadKey)?;
        }
        Ok(MasterKey(key))
    }

    /// The hexadecimal text, for writing the generated key file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A 32-byte key for one `purpose`, derived from the master key (SHA-256 of the key and the
    /// purpose): stable, the same on every node that shares the master key, and telling
    /// nothing of the master key or of keys for other purposes.
    pub fn derive(&self, purpose: &str) -> Zeroizing<[u8; KEY_BYTES]> {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(self.0.as_ref());
        hash.update(purpose.as_bytes());
        Zeroizing::new(hash.finalize().into())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.0).into())
    }

    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        // Encryption of an in-memory buffer cannot fail (only messages over 256 GiB could).
        let sealed = self
            .cipher()
            .encrypt(&nonce.into(), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < NONCE_BYTES {
            return Err(CryptoError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| CryptoError::Open)?;
        let payload = Payload {
            msg: body,
            aad: context.as_bytes(),
        };
        self.cipher()
            .decrypt(&nonce.into(), payload)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_with_context() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"api-key-123", "1:braze");
        assert!(!sealed.windows(11).any(|w| w == b"api-key-123"));
        assert_eq!(
            &*key.open(&sealed, "1:braze").expect("opens"),
            b"api-key-123"
        );
        assert_eq!(key.open(&sealed, "2:braze"), Err(CryptoError::Open));
        assert_eq!(
            MasterKey::generate().open(&sealed, "1:braze"),
            Err(CryptoError::Open)
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(key.open(&tampered, "1:braze"), Err(CryptoError::Open));
        assert_ne!(
            key.seal(b"x", "c"),
            key.seal(b"x", "c"),
            "fresh nonce per seal"
        );
    }

    #[test]
    fn hex_round_trip_and_bad_keys() {
        let key = MasterKey::generate();
        let again = MasterKey::from_hex(&key.to_hex()).expect("hex");
        assert_eq!(
            &*again.open(&key.seal(b"s", "c"), "c").expect("opens"),
            b"s"
        );
        assert_eq!(MasterKey::from_hex("abc").err(), Some(CryptoError::BadKey));
        assert_eq!(
            MasterKey::from_hex(&"zz".repeat(32)).err(),
            Some(CryptoError::BadKey)
        );
    }
}
