//! Secrets: argon2id password hashes, AEAD encryption of S3 secrets under the identity master
//! key, random ids/keys/tokens from the OS RNG, and token digests.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use super::error::{IdentityError, IdentityResult};
use super::limits::{ARGON2_ITERATIONS, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM};

/// Bytes of a ChaCha20-Poly1305 nonce.
pub(crate) const NONCE_BYTES: usize = 12;
/// Random bytes in a Swift token.
const TOKEN_RANDOM_BYTES: usize = 32;
/// What every Swift token starts with (tempauth's style).
pub(crate) const TOKEN_PREFIX: &str = "AUTH_tk";
/// Characters of an access key id.
pub(crate) const ACCESS_KEY_CHARS: usize = 20;
/// Characters of an S3 secret key.
pub(crate) const SECRET_KEY_CHARS: usize = 40;

const ACCESS_KEY_ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_KEY_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The 32-byte key S3 secrets are encrypted under. Supplied by the caller (from the node's
/// configuration or a secrets file); never stored in the metadata store. Its `Debug` shows
/// only its fingerprint.
#[derive(Clone)]
pub struct IdentityMasterKey {
    bytes: [u8; 32],
}

impl IdentityMasterKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        IdentityMasterKey { bytes }
    }

    /// A fresh random key from the OS RNG (for `cairn init` and tests).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        IdentityMasterKey { bytes }
    }

    /// A short public fingerprint: the first 8 bytes of SHA-256 over a domain label and the
    /// key, in hex. Stored with each encrypted secret so a wrong key is reported as such
    /// (rather than as tampering) and so keys can later be rotated.
    pub fn key_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"cairn identity master key id v1\0");
        h.update(self.bytes);
        hex(&h.finalize()[..8])
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.bytes))
    }
}

impl From<[u8; 32]> for IdentityMasterKey {
    fn from(bytes: [u8; 32]) -> Self {
        IdentityMasterKey::from_bytes(bytes)
    }
}

impl fmt::Debug for IdentityMasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityMasterKey({})", self.key_id())
    }
}

/// An encrypted secret as stored: nonce and ciphertext (with the Poly1305 tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub(crate) nonce: [u8; NONCE_BYTES],
    pub(crate) ciphertext: Vec<u8>,
}

/// Encrypts `plaintext`, binding it to `aad` (the record's identity) so a ciphertext cannot be
/// moved to another record.
pub(crate) fn seal(
    key: &IdentityMasterKey,
    plaintext: &[u8],
    aad: &[u8],
) -> IdentityResult<Sealed> {
    let mut nonce = [0u8; NONCE_BYTES];
    // Random 96-bit nonces: safe for far more secrets than a control plane will ever hold.
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| IdentityError::Hashing("AEAD encryption failed".into()))?;
    Ok(Sealed { nonce, ciphertext })
}

/// Decrypts; `None` when authentication fails (wrong key or altered record).
pub(crate) fn open(key: &IdentityMasterKey, sealed: &Sealed, aad: &[u8]) -> Option<Vec<u8>> {
    key.cipher()
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
        .ok()
}

/// Argon2id cost parameters. The chosen ones are recorded in every PHC hash string, so
/// changing them later only affects new hashes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for PasswordParams {
    /// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        PasswordParams {
            memory_kib: ARGON2_MEMORY_KIB,
            iterations: ARGON2_ITERATIONS,
            parallelism: ARGON2_PARALLELISM,
        }
    }
}

impl PasswordParams {
    /// Minimal costs, for tests only: hashing then takes microseconds. Never use in production.
    pub fn insecure_fast_for_tests() -> Self {
        PasswordParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn argon2(&self) -> IdentityResult<Argon2<'static>> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| IdentityError::Hashing(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl fmt::Debug for PasswordParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argon2id(m={} KiB, t={}, p={})",
            self.memory_kib, self.iterations, self.parallelism
        )
    }
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`) with a
/// random salt. CPU-heavy: call from a blocking thread.
pub(crate) fn hash_password(params: PasswordParams, password: &[u8]) -> IdentityResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = params
        .argon2()?
        .hash_password(password, &salt)
        .map_err(|e| IdentityError::Hashing(e.to_string()))?;
    Ok(hash.to_string())
}

/// Verifies a password against a PHC string, using the parameters recorded in it; the final
/// comparison is constant-time (done by `password-hash`). CPU-heavy: call from a blocking
/// thread. A malformed stored hash verifies as false.
pub(crate) fn verify_password(phc: &str, password: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    // Params come from the hash string; the defaults here are only the fallback object.
    Argon2::default().verify_password(password, &parsed).is_ok()
}

/// A random 128-bit id in lowercase hex (32 characters), like Keystone's.
pub(crate) fn new_id() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    hex(&b)
}

/// Whether `s` looks like an id from [`new_id`]; checked before ids go into keys.
pub(crate) fn is_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// An AWS-style access key id: 20 uppercase alphanumerics.
pub(crate) fn new_access_key() -> String {
    random_string(ACCESS_KEY_ALPHABET, ACCESS_KEY_CHARS)
}

/// Whether `s` looks like an access key id.
pub(crate) fn is_access_key(s: &str) -> bool {
    s.len() == ACCESS_KEY_CHARS && s.bytes().all(|c| ACCESS_KEY_ALPHABET.contains(&c))
}

/// An S3 secret: 40 characters of the base64 alphabet (240 bits).
pub(crate) fn new_secret_key() -> String {
    random_string(SECRET_KEY_ALPHABET, SECRET_KEY_CHARS)
}

/// A Swift token: the prefix and 32 random bytes in hex.
pub(crate) fn new_token() -> String {
    let mut b = [0u8; TOKEN_RANDOM_BYTES];
    OsRng.fill_bytes(&mut b);
    format!("{TOKEN_PREFIX}{}", hex(&b))
}

/// The SHA-256 of a token, in hex: what the store keeps instead of the token. A plain hash
/// suffices (no salt, no argon2): tokens carry 256 random bits, so there is nothing to guess.
pub(crate) fn token_digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Uniform random characters from `alphabet` (rejection sampling, so no modulo bias).
fn random_string(alphabet: &[u8], len: usize) -> String {
    // Largest multiple of the alphabet size that fits a byte: bytes at or above it are redrawn.
    let n = alphabet.len();
    let bound = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        OsRng.fill_bytes(&mut buf);
        for &b in &buf {
            if out.len() == len {
                break;
            }
            let b = usize::from(b);
            if b < bound
                && let Some(&c) = alphabet.get(b % n)
            {
                out.push(char::from(c));
            }
        }
    }
    out
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Parses lowercase or uppercase hex.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = char::from(*pair.first()?).to_digit(16)?;
            let lo = char::from(*pair.get(1)?).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_values_have_their_shapes() {
        let ak = new_access_key();
        assert!(is_access_key(&ak), "{ak}");
        let sk = new_secret_key();
        assert_eq!(sk.len(), SECRET_KEY_CHARS);
        assert!(is_id(&new_id()));
        assert_ne!(new_id(), new_id());
        let t = new_token();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])).unwrap(),
            vec![0, 1, 0xab, 0xff]
        );
    }

    #[test]
    fn seal_open_and_wrong_key() {
        let k = IdentityMasterKey::generate();
        let s = seal(&k, b"secret", b"aad").unwrap();
        assert_eq!(open(&k, &s, b"aad").unwrap(), b"secret");
        assert!(open(&k, &s, b"other").is_none());
        assert!(open(&IdentityMasterKey::generate(), &s, b"aad").is_none());
        assert!(!format!("{k:?}").contains(&hex(&k.bytes)));
    }

    #[test]
    fn production_params_are_owasps() {
        let p = PasswordParams::default();
        assert_eq!(
            (p.memory_kib, p.iterations, p.parallelism),
            (19 * 1024, 2, 1)
        );
        assert!(p.argon2().is_ok());
        assert_eq!(format!("{p:?}"), "argon2id(m=19456 KiB, t=2, p=1)");
    }

    #[test]
    fn password_hash_verifies_and_records_params() {
        let p = PasswordParams::insecure_fast_for_tests();
        let h = hash_password(p, b"correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{h}");
        assert!(verify_password(&h, b"correct horse"));
        assert!(!verify_password(&h, b"wrong horse"));
        assert!(!verify_password("garbage", b"x"));
    }
}
