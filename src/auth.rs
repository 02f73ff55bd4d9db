//! API tokens: random, shown once, stored as SHA-256, compared in constant time, scoped.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::str::FromStr;
use subtle::ConstantTimeEq;

use crate::db::models::tokens::{self, TokenRow};
use crate::db::{AnyConnection, Db, DbError};
use crate::error::ApiError;

/// Prefix that makes our tokens recognisable in logs and secret scanners.
const TOKEN_PREFIX: &str = "vat_";

/// What a token may do. The stored and typed name comes from one attribute per variant;
/// the CLI takes it as a value enum (`--scope releases:write`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    clap::ValueEnum,
)]
pub enum Scope {
    /// Add releases and change their security levels.
    #[strum(serialize = "releases:write")]
    #[value(name = "releases:write")]
    ReleasesWrite,
    /// Read the insights API (`/api/v1/insights/…`).
    #[strum(serialize = "insights:read")]
    #[value(name = "insights:read")]
    InsightsRead,
}

impl Scope {
    /// The stored / typed name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl FromStr for Scope {
    type Err = String;
    /// Kept by hand (not strum's `EnumString`) for its message, which lists the known scopes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use strum::IntoEnumIterator;
        Scope::iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Scope::iter().map(Scope::as_str).collect();
                format!("unknown scope `{s}` (known: {})", known.join(", "))
            })
    }
}

/// A freshly made token: the secret (to show once) and what is stored.
pub struct IssuedToken {
    /// The secret; never stored.
    pub secret: String,
    /// The stored row.
    pub row: TokenRow,
}

/// Hex SHA-256 of a token. A fast hash is right here: tokens carry 256 random bits, so
/// there is nothing to brute-force, unlike a password.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Makes a new token with a scope and stores its hash.
pub fn issue(conn: &mut AnyConnection, name: &str, scope: Scope) -> Result<IssuedToken, DbError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let row = tokens::create(conn, name, scope.as_str(), &hash_token(&secret))?;
    Ok(IssuedToken { secret, row })
}

/// The token a request presents in the `PRIVATE-TOKEN` header (GitLab's convention) or as
/// `Authorization: Bearer`.
pub fn presented_token(req: &actix_web::HttpRequest) -> Option<String> {
    let headers = req.headers();
    if let Some(value) = headers.get("private-token").and_then(|v| v.to_str().ok()) {
        return Some(value.to_string());
    }
    headers
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::to_string)
}

/// Why a token was refused, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token was sent.
    #[error("a token is required (form field private_token, or header PRIVATE-TOKEN)")]
    Missing,
    /// The token is unknown or revoked.
    #[error("the token is not valid")]
    Invalid,
    /// The token is valid but lacks the scope.
    #[error("the token lacks the scope {0}")]
    Forbidden(&'static str),
    /// The store could not be asked.
    #[error(transparent)]
    Store(#[from] DbError),
}

/// 401 for a missing or unknown token, 403 for one without the scope, the store's answer
/// otherwise.
impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Store(cause) => cause.into(),
            AuthError::Forbidden(_) => ApiError::Forbidden(err.to_string()),
            AuthError::Missing | AuthError::Invalid => ApiError::Unauthorized(err.to_string()),
        }
    }
}

/// Checks a presented token for a scope.
pub fn authorize(
    conn: &mut AnyConnection,
    presented: Option<&str>,
    scope: Scope,
) -> Result<TokenRow, AuthError> {
    let Some(secret) = presented.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(AuthError::Missing);
    };
    if secret.len() > 256 {
        return Err(AuthError::Invalid);
    }
    let hash = hash_token(secret);
    let Some(row) = tokens::find_active_by_hash(conn, &hash)? else {
        return Err(AuthError::Invalid);
    };
    // The lookup matched on the hash already; comparing again in constant time keeps the
    // decision itself free of timing differences whatever the index does.
    if !bool::from(row.token_hash.as_bytes().ct_eq(hash.as_bytes())) {
        return Err(AuthError::Invalid);
    }
    if row.scope != scope.as_str() {
        return Err(AuthError::Forbidden(scope.as_str()));
    }
    Ok(row)
}

/// [`authorize`] on the blocking pool, for handlers. A store failure is remembered for
/// readiness like any other ([`Db::note_fault`]).
pub async fn authorize_on(
    db: &Db,
    presented: Option<String>,
    scope: Scope,
) -> Result<TokenRow, AuthError> {
    let noted = db.clone();
    // The closure's own error is the store's (no connection); refusals come back inside.
    db.run(move |conn| Ok(authorize(conn, presented.as_deref(), scope)))
        .await?
        .inspect_err(|err| {
            if let AuthError::Store(cause) = err {
                noted.note_fault(cause);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_hex() {
        assert_eq!(hash_token("abc").len(), 64);
        assert_eq!(hash_token("abc"), hash_token("abc"));
        assert_ne!(hash_token("abc"), hash_token("abd"));
    }

    #[test]
    fn scopes_round_trip() {
        assert_eq!(
            "releases:write".parse::<Scope>().unwrap(),
            Scope::ReleasesWrite
        );
        assert_eq!(
            "insights:read".parse::<Scope>().unwrap(),
            Scope::InsightsRead
        );
        assert!("admin".parse::<Scope>().is_err());
    }
}
