//! The `releases` table.

use chrono::{NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;

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
        let corrupt = |source: Box<dyn std::error::Error + Send + Sync>| DbError::Corrupt {
            what: format!("stored release {}", self.version),
            source,
        };
        let version = Version::parse(&self.version).map_err(|e| corrupt(e.into()))?;
        let security: SecurityLevel = self
            .security
            .parse()
            .map_err(|e: <SecurityLevel as std::str::FromStr>::Err| corrupt(e.into()))?;
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
