//! The `api_tokens` table. Only hashes are stored (see the `auth` module).

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::api_tokens;
use crate::db::{AnyConnection, DbError};
use crate::with_conn;

/// A stored token (its hash, never the token).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct TokenRow {
    /// Row id, used to revoke.
    pub id: i64,
    /// Human name.
    pub name: String,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// Granted scope.
    pub scope: String,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Last use.
    pub last_used_at: Option<NaiveDateTime>,
    /// Revocation time.
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = api_tokens)]
struct NewToken<'a> {
    name: &'a str,
    token_hash: &'a str,
    scope: &'a str,
    created_at: NaiveDateTime,
}

/// Stores a new token hash.
pub fn create(
    conn: &mut AnyConnection,
    name: &str,
    scope: &str,
    token_hash: &str,
) -> Result<TokenRow, DbError> {
    let row = NewToken {
        name,
        token_hash,
        scope,
        created_at: Utc::now().naive_utc(),
    };
    Ok(with_conn!(conn, |c| diesel::insert_into(
        api_tokens::table
    )
    .values(&row)
    .returning(TokenRow::as_returning())
    .get_result(c))?)
}

/// Every token, oldest first.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<TokenRow>, DbError> {
    Ok(with_conn!(conn, |c| api_tokens::table
        .order(api_tokens::id.asc())
        .select(TokenRow::as_select())
        .load(c))?)
}

/// Revokes a token; false when no active token has that id.
pub fn revoke(conn: &mut AnyConnection, id: i64) -> Result<bool, DbError> {
    let now = Utc::now().naive_utc();
    let updated = with_conn!(conn, |c| diesel::update(
        api_tokens::table
            .filter(api_tokens::id.eq(id))
            .filter(api_tokens::revoked_at.is_null())
    )
    .set(api_tokens::revoked_at.eq(now))
    .execute(c))?;
    Ok(updated > 0)
}

/// Finds an unrevoked token by hash and stamps its use.
pub fn find_active_by_hash(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<Option<TokenRow>, DbError> {
    let now = Utc::now().naive_utc();
    Ok(with_conn!(conn, |c| {
        let found = api_tokens::table
            .filter(api_tokens::token_hash.eq(token_hash))
            .filter(api_tokens::revoked_at.is_null())
            .select(TokenRow::as_select())
            .first(c)
            .optional()?;
        if let Some(token) = &found {
            diesel::update(api_tokens::table.filter(api_tokens::id.eq(token.id)))
                .set(api_tokens::last_used_at.eq(now))
                .execute(c)?;
        }
        diesel::QueryResult::Ok(found)
    })?)
}
