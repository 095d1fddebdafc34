//! API key tokens: `<key id>$<64 hex chars>`, stored only as a SHA-256 hash. Tokens carry 256
//! random bits, so a fast unsalted hash is enough: there is nothing to brute-force.

use sha2::{Digest, Sha256};

pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// A fresh random secret (the part after `$`).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn token(id: i64, secret: &str) -> String {
    format!("{id}${secret}")
}
