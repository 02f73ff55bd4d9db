//! Passwords: argon2id hashes in PHC form (parameters and salt travel with the hash), and
//! the rules for account names and passwords.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use std::sync::OnceLock;

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted: hashing is costly, so an unbounded input is a lever for abuse.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest account name.
pub const MAX_NAME_CHARS: usize = 64;

/// Hashes a password with argon2id (the crate's defaults: OWASP's m=19 MiB, t=2, p=1) and a
/// fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// True when `password` matches the stored PHC string. A malformed stored hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the time of one verification without an account, so that an unknown name and a
/// wrong password take as long as each other.
pub fn verify_against_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        hash_password("a password that no account has, used for timing only")
            .expect("hashing a constant works")
    });
    let _ = verify_password(password, dummy);
}

/// Checks a new password against the rules; the message says what is wrong.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password must have at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Checks an account name: 1 to 64 of letters, digits, `.`, `_`, `-` and `@`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || !ok_chars {
        return Err(format!(
            "`{name}` is not a valid account name (1 to {MAX_NAME_CHARS} letters, digits, `.`, `_`, `-` or `@`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "fresh salt each time");
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse batterx", &a));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn rules_name_the_problem() {
        assert!(check_new_password("short").unwrap_err().contains("12"));
        assert!(check_new_password("long enough password").is_ok());
        assert!(check_name("alice.smith@example").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("<script>").is_err());
    }
}
