//! The `console_users` and `console_sessions` tables. Passwords arrive here already hashed
//! and session ids already hashed; see [`crate::console`].

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{console_sessions, console_users};
use crate::db::{AnyConnection, DbError};
use crate::with_conn;

/// A stored account.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = console_users)]
pub struct UserRow {
    /// Row id.
    pub id: i64,
    /// Login name.
    pub name: String,
    /// Role text (`analyst`, `release_manager`, `admin`).
    pub role: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Creation time (UTC).
    pub created_at: NaiveDateTime,
    /// Disabled accounts cannot log in.
    pub disabled: bool,
}

#[derive(Insertable)]
#[diesel(table_name = console_users)]
struct NewUser<'a> {
    name: &'a str,
    role: &'a str,
    password_hash: &'a str,
    created_at: NaiveDateTime,
    disabled: bool,
}

/// Adds an account; `Ok(None)` when the name is taken.
pub fn insert_user(
    conn: &mut AnyConnection,
    name: &str,
    role: &str,
    password_hash: &str,
    now: NaiveDateTime,
) -> Result<Option<UserRow>, DbError> {
    let row = NewUser {
        name,
        role,
        password_hash,
        created_at: now,
        disabled: false,
    };
    Ok(with_conn!(conn, |c| diesel::insert_into(
        console_users::table
    )
    .values(&row)
    .on_conflict(console_users::name)
    .do_nothing()
    .returning(UserRow::as_returning())
    .get_result(c)
    .optional())?)
}

/// Every account, by name.
pub fn list_users(conn: &mut AnyConnection) -> Result<Vec<UserRow>, DbError> {
    Ok(with_conn!(conn, |c| console_users::table
        .order(console_users::name.asc())
        .select(UserRow::as_select())
        .load(c))?)
}

/// One account by name.
pub fn find_user(conn: &mut AnyConnection, name: &str) -> Result<Option<UserRow>, DbError> {
    Ok(with_conn!(conn, |c| console_users::table
        .filter(console_users::name.eq(name))
        .select(UserRow::as_select())
        .first(c)
        .optional())?)
}

/// Changes an account's role; false when there is no such account.
pub fn set_role(conn: &mut AnyConnection, name: &str, role: &str) -> Result<bool, DbError> {
    let updated = with_conn!(conn, |c| diesel::update(
        console_users::table.filter(console_users::name.eq(name))
    )
    .set(console_users::role.eq(role))
    .execute(c))?;
    Ok(updated > 0)
}

/// Sets a new password hash and ends the account's sessions; false when there is no such
/// account.
pub fn set_password(conn: &mut AnyConnection, name: &str, hash: &str) -> Result<bool, DbError> {
    Ok(with_conn!(conn, |c| c.transaction(|c| {
        let Some(id) = console_users::table
            .filter(console_users::name.eq(name))
            .select(console_users::id)
            .first::<i64>(c)
            .optional()?
        else {
            return diesel::QueryResult::Ok(false);
        };
        diesel::update(console_users::table.filter(console_users::id.eq(id)))
            .set(console_users::password_hash.eq(hash))
            .execute(c)?;
        diesel::delete(console_sessions::table.filter(console_sessions::user_id.eq(id)))
            .execute(c)?;
        Ok(true)
    }))?)
}

/// Removes an account and its sessions; false when there is no such account.
pub fn remove_user(conn: &mut AnyConnection, name: &str) -> Result<bool, DbError> {
    Ok(with_conn!(conn, |c| c.transaction(|c| {
        let Some(id) = console_users::table
            .filter(console_users::name.eq(name))
            .select(console_users::id)
            .first::<i64>(c)
            .optional()?
        else {
            return diesel::QueryResult::Ok(false);
        };
        // Explicit, not only ON DELETE CASCADE: a session must never outlive its account.
        diesel::delete(console_sessions::table.filter(console_sessions::user_id.eq(id)))
            .execute(c)?;
        diesel::delete(console_users::table.filter(console_users::id.eq(id))).execute(c)?;
        Ok(true)
    }))?)
}

/// A stored session joined with its account.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Row id.
    pub id: i64,
    /// The account's name.
    pub user_name: String,
    /// The account's role text.
    pub role: String,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// CSRF synchronizer token.
    pub csrf_token: String,
    /// Login time.
    pub created_at: NaiveDateTime,
    /// Last request seen.
    pub last_seen: NaiveDateTime,
    /// Absolute end.
    pub expires_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = console_sessions)]
struct NewSession<'a> {
    session_hash: &'a str,
    user_id: i64,
    csrf_token: &'a str,
    created_at: NaiveDateTime,
    last_seen: NaiveDateTime,
    expires_at: NaiveDateTime,
}

/// Starts a session for an account, and clears sessions that have ended (`idle_before`:
/// sessions last seen before it are over).
pub fn create_session(
    conn: &mut AnyConnection,
    user_id: i64,
    session_hash: &str,
    csrf_token: &str,
    now: NaiveDateTime,
    expires_at: NaiveDateTime,
    idle_before: NaiveDateTime,
) -> Result<(), DbError> {
    let row = NewSession {
        session_hash,
        user_id,
        csrf_token,
        created_at: now,
        last_seen: now,
        expires_at,
    };
    with_conn!(conn, |c| c.transaction(|c| {
        diesel::delete(
            console_sessions::table.filter(
                console_sessions::expires_at
                    .le(now)
                    .or(console_sessions::last_seen.lt(idle_before)),
            ),
        )
        .execute(c)?;
        diesel::insert_into(console_sessions::table)
            .values(&row)
            .execute(c)?;
        diesel::QueryResult::Ok(())
    }))?;
    Ok(())
}

/// The session with this id hash, with its account.
pub fn find_session(
    conn: &mut AnyConnection,
    session_hash: &str,
) -> Result<Option<SessionRow>, DbError> {
    type Tuple = (
        i64,
        String,
        String,
        bool,
        String,
        NaiveDateTime,
        NaiveDateTime,
        NaiveDateTime,
    );
    let found: Option<Tuple> = with_conn!(conn, |c| console_sessions::table
        .inner_join(console_users::table)
        .filter(console_sessions::session_hash.eq(session_hash))
        .select((
            console_sessions::id,
            console_users::name,
            console_users::role,
            console_users::disabled,
            console_sessions::csrf_token,
            console_sessions::created_at,
            console_sessions::last_seen,
            console_sessions::expires_at,
        ))
        .first(c)
        .optional())?;
    Ok(found.map(
        |(id, user_name, role, disabled, csrf_token, created_at, last_seen, expires_at)| {
            SessionRow {
                id,
                user_name,
                role,
                disabled,
                csrf_token,
                created_at,
                last_seen,
                expires_at,
            }
        },
    ))
}

/// Stamps a session's activity.
pub fn touch_session(conn: &mut AnyConnection, id: i64, now: NaiveDateTime) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::update(
        console_sessions::table.filter(console_sessions::id.eq(id))
    )
    .set(console_sessions::last_seen.eq(now))
    .execute(c))?;
    Ok(())
}

/// Ends a session.
pub fn delete_session(conn: &mut AnyConnection, id: i64) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::delete(
        console_sessions::table.filter(console_sessions::id.eq(id))
    )
    .execute(c))?;
    Ok(())
}

/// Sessions currently stored for an account (tests and `user list`).
pub fn count_sessions(conn: &mut AnyConnection, name: &str) -> Result<i64, DbError> {
    Ok(with_conn!(conn, |c| console_sessions::table
        .inner_join(console_users::table)
        .filter(console_users::name.eq(name))
        .count()
        .get_result(c))?)
}
