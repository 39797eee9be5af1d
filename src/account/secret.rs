//! The secrets of accounts: random codes and tokens from OpenSSL's generator,
//! codes and typed values kept as HMAC-SHA256 under the server's pepper, session
//! and refresh secrets as SHA-256, passwords as argon2id; every comparison of a
//! secret in constant time.

use std::sync::{Condvar, Mutex, OnceLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// `n` bytes from OpenSSL's generator.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    openssl::rand::rand_bytes(&mut bytes).expect("OpenSSL's random generator");
    bytes
}

/// A secret to hand out (session, ticket, refresh token, authorisation code):
/// 256 random bits, base64url.
pub fn token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(32))
}

/// The provisional code's alphabet: 31 characters, none mistaken for another
/// (no 0/O, 1/I/L).
const PROVISIONAL_ALPHABET: &[u8; 31] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A provisional code (R-ACT-1): 10 characters of [`PROVISIONAL_ALPHABET`]
/// (about 49 bits), grouped by five for reading (`ABCDE-FGHJK`).
pub fn provisional_code() -> String {
    let mut code = String::with_capacity(11);
    let mut drawn = 0;
    while drawn < 10 {
        // Five random bits; the 32nd value is dropped (no bias).
        let bits = random_bytes(1)[0] & 0x1f;
        if let Some(&c) = PROVISIONAL_ALPHABET.get(bits as usize) {
            if drawn == 5 {
                code.push('-');
            }
            code.push(c as char);
            drawn += 1;
        }
    }
    code
}

/// A provisional code as typed: capitals, without spaces or dashes.
pub fn normalise_provisional_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// A one-time sign-in code (R-ACT-3): 6 digits, uniform.
pub fn one_time_code() -> String {
    let mut code = String::with_capacity(6);
    while code.len() < 6 {
        let byte = random_bytes(1)[0];
        // 250 = 25 × 10: the values above are dropped (no bias).
        if byte < 250 {
            code.push(char::from(b'0' + byte % 10));
        }
    }
    code
}

/// SHA-256 in hex (secrets of 256 random bits: nothing to guess).
pub fn sha256_hex(text: &str) -> String {
    hex(&openssl::sha::sha256(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether two secrets' hashes are equal, in time that does not depend on where
/// they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

/// The server's HMAC key: short codes and typed values (a NIR, an identifiant)
/// are kept as HMAC-SHA256 under it, so that a copy of the database does not
/// give them back by trying every code.
#[derive(Clone)]
pub struct Pepper(Vec<u8>);

impl Pepper {
    pub fn new(key: Vec<u8>) -> Pepper {
        Pepper(key)
    }

    /// A new key, base64url, to store.
    pub fn generate() -> String {
        URL_SAFE_NO_PAD.encode(random_bytes(32))
    }

    /// The key stored as [`Pepper::generate`] made it.
    pub fn from_stored(text: &str) -> Result<Pepper, String> {
        let key = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| "the stored code pepper is not base64url".to_owned())?;
        if key.len() < 32 {
            return Err("the stored code pepper is shorter than 32 bytes".into());
        }
        Ok(Pepper(key))
    }

    /// HMAC-SHA256 of `purpose` and `text`, in hex: the purpose keeps a code of one
    /// kind from matching a hash of another.
    pub fn hash(&self, purpose: &str, text: &str) -> String {
        let key = PKey::hmac(&self.0).expect("an HMAC key");
        let mut signer = Signer::new(MessageDigest::sha256(), &key).expect("HMAC-SHA256");
        signer
            .update(purpose.as_bytes())
            .and_then(|()| signer.update(b"\0"))
            .and_then(|()| signer.update(text.as_bytes()))
            .expect("HMAC update");
        hex(&signer.sign_to_vec().expect("HMAC"))
    }
}

/// Password hashes computed at once at most: argon2id takes 19 MiB each, so a
/// burst of sign-ins waits here rather than growing the process.
const HASHES_AT_ONCE: usize = 4;

struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| Slots {
        free: Mutex::new(HASHES_AT_ONCE),
        freed: Condvar::new(),
    })
}

/// Runs `work` when one of the [`HASHES_AT_ONCE`] slots is free.
fn in_slot<T>(work: impl FnOnce() -> T) -> T {
    let slots = slots();
    let mut free = slots.free.lock().unwrap_or_else(|p| p.into_inner());
    while *free == 0 {
        free = slots.freed.wait(free).unwrap_or_else(|p| p.into_inner());
    }
    *free -= 1;
    drop(free);
    let result = work();
    *slots.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    slots.freed.notify_one();
    result
}

/// The password's argon2id hash (19 MiB, 2 passes, the RFC 9106 / OWASP second
/// choice), in PHC form with its random salt. Blocking: call it off the HTTP
/// workers.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&random_bytes(16)).expect("a 16-byte salt");
    in_slot(|| {
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2id hashes any password")
            .to_string()
    })
}

/// Whether `password` is the one `stored` is the hash of; with no stored hash (no
/// such account, or none chosen yet), the same work against a hash of nothing, so
/// that the answer takes as long either way. Blocking.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    static NOBODY: OnceLock<String> = OnceLock::new();
    let nobody = NOBODY.get_or_init(|| hash_password(&token()));
    let (hash, real) = match stored {
        Some(hash) => (hash, true),
        None => (nobody.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let matches = in_slot(|| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    });
    matches && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_shape_and_differ() {
        let code = provisional_code();
        assert_eq!(code.len(), 11);
        assert_eq!(&code[5..6], "-");
        assert!(
            code.chars()
                .all(|c| c == '-' || PROVISIONAL_ALPHABET.contains(&(c as u8)))
        );
        assert_ne!(provisional_code(), provisional_code());
        assert_eq!(normalise_provisional_code(" abcde-fghjk "), "ABCDEFGHJK");
        let otp = one_time_code();
        assert_eq!(otp.len(), 6);
        assert!(otp.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("Motdepasse1!");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("Motdepasse1!", Some(&hash)));
        assert!(!verify_password("Motdepasse2!", Some(&hash)));
        assert!(!verify_password("Motdepasse1!", None));
        assert!(!verify_password("Motdepasse1!", Some("not a hash")));
    }

    #[test]
    fn the_pepper_keys_each_purpose_apart() {
        let pepper = Pepper::from_stored(&Pepper::generate()).unwrap();
        assert_eq!(pepper.hash("otp", "123456"), pepper.hash("otp", "123456"));
        assert_ne!(pepper.hash("otp", "123456"), pepper.hash("nir", "123456"));
        let other = Pepper::from_stored(&Pepper::generate()).unwrap();
        assert_ne!(pepper.hash("otp", "123456"), other.hash("otp", "123456"));
        assert!(same(&pepper.hash("a", "b"), &pepper.hash("a", "b")));
        assert!(!same(&pepper.hash("a", "b"), &pepper.hash("a", "c")));
    }
}
