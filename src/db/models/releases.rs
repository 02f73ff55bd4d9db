//! The `releases` table.

use chrono::{NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;

use crate::db::schema::releases;
use crate::db::{AnyConnection, DbError, WriteTransaction};
use crate::domain::release::{Release, SecurityLevel};
use crate::domain::version::Version;
use crate::with_conn;

/// A stored release.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = releases)]
pub struct ReleaseRow {
    /// Row id.
    pub id: i64,
    /// Canonical version.
    pub version: String,
    /// Numeric major.
    pub major: i64,
    /// Numeric minor.
    pub minor: i64,
    /// Numeric patch.
    pub patch: i64,
    /// Publication day.
    pub released_on: NaiveDate,
    /// Security level text.
    pub security: String,
    /// Advisory batch id.
    pub advisory: Option<String>,
    /// Advisory text.
    pub details: String,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Last change.
    pub updated_at: NaiveDateTime,
}

impl ReleaseRow {
    /// Converts to the domain type; a row that no longer parses is reported, not hidden.
    pub fn to_domain(&self) -> Result<Release, DbError> {
        let version = Version::parse(&self.version)
            .map_err(|e| DbError::Other(format!("stored release {}: {e}", self.version)))?;
        let security: SecurityLevel = self
            .security
            .parse()
            .map_err(|e| DbError::Other(format!("stored release {}: {e}", self.version)))?;
        Ok(Release {
            version,
            released_on: self.released_on,
            security,
            advisory: self.advisory.clone(),
            details: self.details.clone(),
        })
    }
}

/// A release to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = releases)]
pub struct NewRelease {
    version: String,
    major: i64,
    minor: i64,
    patch: i64,
    released_on: NaiveDate,
    security: String,
    advisory: Option<String>,
    details: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl NewRelease {
    /// Prepares a domain release for insertion, stamped now.
    pub fn from_domain(release: &Release) -> NewRelease {
        let now = Utc::now().naive_utc();
        NewRelease {
            version: release.version.to_string(),
            major: release.version.major() as i64,
            minor: release.version.minor() as i64,
            patch: release.version.patch() as i64,
            released_on: release.released_on,
            security: release.security.as_str().to_string(),
            advisory: release.advisory.clone(),
            details: release.details.clone(),
            created_at: now,
            updated_at: now,
        }
    }
}

/// Every release, in no particular order (the snapshot sorts them as versions).
pub fn list_all(conn: &mut AnyConnection) -> Result<Vec<ReleaseRow>, DbError> {
    Ok(with_conn!(conn, |c| releases::table
        .select(ReleaseRow::as_select())
        .load(c))?)
}

/// Loads every release as domain values.
pub fn list_domain(conn: &mut AnyConnection) -> Result<Vec<Release>, DbError> {
    list_all(conn)?.iter().map(ReleaseRow::to_domain).collect()
}

/// A cheap fingerprint of the table (row count, last change) to notice edits made by
/// other processes without reloading every row.
pub fn change_marker(conn: &mut AnyConnection) -> Result<(i64, Option<NaiveDateTime>), DbError> {
    use diesel::dsl::{count_star, max};
    Ok(with_conn!(conn, |c| releases::table
        .select((count_star(), max(releases::updated_at)))
        .first::<(i64, Option<NaiveDateTime>)>(c))?)
}

/// Finds one release by canonical version.
pub fn find_by_version(
    conn: &mut AnyConnection,
    version: &Version,
) -> Result<Option<ReleaseRow>, DbError> {
    let text = version.to_string();
    Ok(with_conn!(conn, |c| releases::table
        .filter(releases::version.eq(&text))
        .select(ReleaseRow::as_select())
        .first(c)
        .optional())?)
}

/// Inserts a new release; `Ok(None)` when that version already exists.
pub fn insert(conn: &mut AnyConnection, release: &Release) -> Result<Option<ReleaseRow>, DbError> {
    let row = NewRelease::from_domain(release);
    Ok(with_conn!(conn, |c| diesel::insert_into(releases::table)
        .values(&row)
        .on_conflict(releases::version)
        .do_nothing()
        .returning(ReleaseRow::as_returning())
        .get_result(c)
        .optional())?)
}

/// Inserts or updates every release by version, all or nothing.
pub fn upsert_all(conn: &mut AnyConnection, list: &[Release]) -> Result<usize, DbError> {
    let rows: Vec<NewRelease> = list.iter().map(NewRelease::from_domain).collect();
    Ok(with_conn!(conn, |c| c.write_transaction(|c| {
        let mut written = 0;
        for row in &rows {
            written += diesel::insert_into(releases::table)
                .values(row)
                .on_conflict(releases::version)
                .do_update()
                .set((
                    releases::released_on.eq(excluded(releases::released_on)),
                    releases::security.eq(excluded(releases::security)),
                    releases::advisory.eq(excluded(releases::advisory)),
                    releases::details.eq(excluded(releases::details)),
                    releases::updated_at.eq(excluded(releases::updated_at)),
                ))
                .execute(c)?;
        }
        diesel::QueryResult::Ok(written)
    }))?)
}

/// Loads the bundled table into an empty store; a store that has releases is left alone,
/// and a concurrent start of a second process inserts nothing twice.
pub fn seed_if_empty(conn: &mut AnyConnection, list: &[Release]) -> Result<usize, DbError> {
    let rows: Vec<NewRelease> = list.iter().map(NewRelease::from_domain).collect();
    Ok(with_conn!(conn, |c| c.write_transaction(|c| {
        let existing: i64 = releases::table.count().get_result(c)?;
        if existing > 0 {
            return diesel::QueryResult::Ok(0);
        }
        let mut written = 0;
        for row in &rows {
            written += diesel::insert_into(releases::table)
                .values(row)
                .on_conflict(releases::version)
                .do_nothing()
                .execute(c)?;
        }
        Ok(written)
    }))?)
}

/// What a release manager may change on an existing release.
#[derive(Debug, Clone, Default)]
pub struct SecurityChange {
    /// New security level.
    pub security: SecurityLevel,
    /// New advisory id (`None` leaves it; `Some(None)` clears it).
    pub advisory: Option<Option<String>>,
    /// New advisory text (`None` leaves it).
    pub details: Option<String>,
}

/// Applies a security change; `Ok(None)` when the release does not exist.
pub fn update_security(
    conn: &mut AnyConnection,
    version: &Version,
    change: &SecurityChange,
) -> Result<Option<ReleaseRow>, DbError> {
    let text = version.to_string();
    let now = Utc::now().naive_utc();
    Ok(with_conn!(conn, |c| c.write_transaction(|c| {
        let target = releases::table.filter(releases::version.eq(&text));
        let updated = diesel::update(target)
            .set((
                releases::security.eq(change.security.as_str()),
                releases::updated_at.eq(now),
            ))
            .execute(c)?;
        if updated == 0 {
            return Ok(None);
        }
        if let Some(advisory) = &change.advisory {
            diesel::update(target)
                .set(releases::advisory.eq(advisory))
                .execute(c)?;
        }
        if let Some(details) = &change.details {
            diesel::update(target)
                .set(releases::details.eq(details))
                .execute(c)?;
        }
        target.select(ReleaseRow::as_select()).first(c).map(Some)
    }))?)
}
