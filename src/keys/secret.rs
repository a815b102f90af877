//! Virtual key secrets: made from the OS's random source, stored only as
//! their SHA-256, shown in listings as a short hint.

use sha2::{Digest, Sha256};

/// Every virtual key starts with this, so a leaked one is recognisable
/// (secret scanners, logs) and told apart from a provider's key.
pub const PREFIX: &str = "yk-";

/// A new secret: `yk-` and 64 hex digits (two random UUIDs' 244 random
/// bits; `uuid`'s v4 reads the OS's random source through `getrandom`).
pub fn generate() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{PREFIX}{a}{b}")
}

/// The stored form of a secret: its SHA-256 in hex. Keys are long random
/// strings, so a fast hash is enough (no password stretching needed).
pub fn hash(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

/// What listings show: the prefix and the last four characters.
pub fn hint(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head = if secret.starts_with(PREFIX) {
        PREFIX
    } else {
        ""
    };
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with("yk-") && a.len() == 67, "{a}");
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hint("yk-0123abcd"), "yk-…abcd");
        assert_eq!(hint("sk-x"), "…sk-x");
    }
}
