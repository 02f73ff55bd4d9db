//! Audited writes to the `releases` table and the append-only `release_changes` trail.
//!
//! [`write_edits`] is the one way the release table changes (web, API, CLI, import, sync,
//! revert): in one transaction it applies the edits, writes the rows, and records one
//! audit entry per changed field. The table's triggers refuse any UPDATE or DELETE of an
//! entry, so there is no way to edit the trail, here or elsewhere.

use chrono::{NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::models::releases::{NewRelease, ReleaseRow};
use crate::db::schema::{release_changes, releases};
use crate::db::{AnyConnection, DbError, WriteTransaction};
use crate::domain::release::Release;
use crate::domain::release_edit::{self, Edit, EditError, FieldChange, Via};
use crate::with_conn;

/// Audit rows inserted per statement (bound parameters stay far below SQLite's limit).
const INSERT_CHUNK: usize = 500;

/// One stored audit entry; also the JSON of the history API.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = release_changes)]
pub struct ChangeRow {
    /// Change id.
    pub id: i64,
    /// Operation id shared by the entries written together.
    pub batch: String,
    /// When (UTC).
    pub at: NaiveDateTime,
    /// Who.
    pub actor: String,
    /// Through which path.
    pub via: String,
    /// The release.
    pub version: String,
    /// The field.
    pub field: String,
    /// Value before.
    pub old: Option<String>,
    /// Value after.
    pub new: Option<String>,
    /// Free note (reverts say what they revert).
    pub note: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = release_changes)]
struct NewChange<'a> {
    batch: &'a str,
    at: NaiveDateTime,
    actor: &'a str,
    via: &'a str,
    version: &'a str,
    field: &'a str,
    old: Option<&'a str>,
    new: Option<&'a str>,
    note: Option<&'a str>,
}

/// Who makes a change, and how.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Account name, `token:NAME`, OS user, `sync:URL`.
    pub name: String,
    /// The path.
    pub via: Via,
    /// Recorded with every entry (e.g. `revert of change 12`).
    pub note: Option<String>,
}

impl Actor {
    /// An actor without a note.
    pub fn new(name: impl Into<String>, via: Via) -> Actor {
        Actor {
            name: name.into(),
            via,
            note: None,
        }
    }
}

/// A value the writer expected a field to have (optimistic concurrency: a form sends the
/// values it was rendered with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The release.
    pub version: String,
    /// The field.
    pub field: &'static str,
    /// The value the form saw.
    pub value: Option<String>,
}

/// Why a write did not happen (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An edit does not fit the table (duplicate, missing version).
    #[error(transparent)]
    Edit(#[from] EditError),
    /// Someone changed a field since the form was rendered: `old` is what the form saw,
    /// `new` what the field holds now.
    #[error("the release changed since the form was loaded")]
    Stale(Vec<FieldChange>),
    /// The store failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

enum TxError {
    Query(diesel::result::Error),
    Edit(EditError),
    Stale(Vec<FieldChange>),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Query(e)
    }
}

impl From<TxError> for WriteError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Query(q) => WriteError::Db(DbError::Query(q)),
            TxError::Edit(e) => WriteError::Edit(e),
            TxError::Stale(s) => WriteError::Stale(s),
        }
    }
}

/// A random operation id.
fn new_batch_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn row_values(row: &ReleaseRow) -> Result<Release, TxError> {
    row.to_domain().map_err(|e| {
        TxError::Query(diesel::result::Error::DeserializationError(
            e.to_string().into(),
        ))
    })
}

/// Applies `edits` in order, in one transaction, with an audit entry per changed field.
/// Edits that change nothing write nothing. Returns the entries written (empty when
/// nothing changed).
pub fn write_edits(
    conn: &mut AnyConnection,
    edits: &[Edit],
    expect: &[Expect],
    actor: &Actor,
) -> Result<Vec<ChangeRow>, WriteError> {
    let batch = new_batch_id();
    let now = Utc::now().naive_utc();
    let today: NaiveDate = now.date();
    let versions: Vec<String> = edits
        .iter()
        .map(|e| e.version.to_string())
        .chain(expect.iter().map(|e| e.version.clone()))
        .collect();
    let result: Result<Vec<ChangeRow>, TxError> = with_conn!(conn, |c| c.write_transaction(|c| {
        let rows: Vec<ReleaseRow> = releases::table
            .filter(releases::version.eq_any(&versions))
            .select(ReleaseRow::as_select())
            .load(c)?;
        let mut current: Vec<Release> = rows.iter().map(row_values).collect::<Result<_, _>>()?;
        let stale: Vec<FieldChange> = expect
            .iter()
            .filter_map(|e| {
                let now_value = current
                    .iter()
                    .find(|r| r.version.to_string() == e.version)
                    .and_then(|r| {
                        release_edit::field_values(r)
                            .into_iter()
                            .find(|(f, _)| *f == e.field)
                            .map(|(_, v)| v)
                    })
                    .flatten();
                (now_value != e.value).then(|| FieldChange {
                    version: e.version.clone(),
                    field: e.field,
                    old: e.value.clone(),
                    new: now_value,
                })
            })
            .collect();
        if !stale.is_empty() {
            return Err(TxError::Stale(stale));
        }
        let mut changes: Vec<FieldChange> = Vec::new();
        for edit in edits {
            let position = current.iter().position(|r| r.version == edit.version);
            let old = position.map(|i| current[i].clone());
            let new = release_edit::apply(old.as_ref(), edit, today).map_err(TxError::Edit)?;
            let diff = release_edit::diff(&edit.version, old.as_ref(), new.as_ref());
            if diff.is_empty() {
                continue;
            }
            let text = edit.version.to_string();
            match (&position, &new) {
                (Some(_), Some(new)) => {
                    diesel::update(releases::table.filter(releases::version.eq(&text)))
                        .set((
                            releases::released_on.eq(new.released_on),
                            releases::security.eq(new.security.as_str()),
                            releases::advisory.eq(&new.advisory),
                            releases::details.eq(&new.details),
                            releases::updated_at.eq(now),
                        ))
                        .execute(c)?;
                }
                (Some(_), None) => {
                    diesel::delete(releases::table.filter(releases::version.eq(&text)))
                        .execute(c)?;
                }
                (None, Some(new)) => {
                    diesel::insert_into(releases::table)
                        .values(NewRelease::from_domain(new))
                        .execute(c)?;
                }
                (None, None) => {}
            }
            match (position, new) {
                (Some(i), Some(new)) => current[i] = new,
                (Some(i), None) => {
                    current.remove(i);
                }
                (None, Some(new)) => current.push(new),
                (None, None) => {}
            }
            changes.extend(diff);
        }
        let entries: Vec<NewChange<'_>> = changes
            .iter()
            .map(|ch| NewChange {
                batch: &batch,
                at: now,
                actor: &actor.name,
                via: actor.via.as_str(),
                version: &ch.version,
                field: ch.field,
                old: ch.old.as_deref(),
                new: ch.new.as_deref(),
                note: actor.note.as_deref(),
            })
            .collect();
        for chunk in entries.chunks(INSERT_CHUNK) {
            diesel::insert_into(release_changes::table)
                .values(chunk)
                .execute(c)?;
        }
        let written = release_changes::table
            .filter(release_changes::batch.eq(&batch))
            .order(release_changes::id.asc())
            .select(ChangeRow::as_select())
            .load(c)?;
        Ok(written)
    }));
    result.map_err(WriteError::from)
}

/// History entries, newest first: of one release or of all, at most `limit`, older than
/// `before` (an id) when given.
pub fn history(
    conn: &mut AnyConnection,
    version: Option<&str>,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<ChangeRow>, DbError> {
    Ok(with_conn!(conn, |c| {
        let mut query = release_changes::table
            .select(ChangeRow::as_select())
            .order(release_changes::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(v) = version {
            query = query.filter(release_changes::version.eq(v.to_string()));
        }
        if let Some(id) = before {
            query = query.filter(release_changes::id.lt(id));
        }
        query.load(c)
    })?)
}

/// One entry by id.
pub fn find(conn: &mut AnyConnection, id: i64) -> Result<Option<ChangeRow>, DbError> {
    Ok(with_conn!(conn, |c| release_changes::table
        .filter(release_changes::id.eq(id))
        .select(ChangeRow::as_select())
        .first(c)
        .optional())?)
}

/// The entries of one operation, in order.
pub fn batch_entries(conn: &mut AnyConnection, batch: &str) -> Result<Vec<ChangeRow>, DbError> {
    Ok(with_conn!(conn, |c| release_changes::table
        .filter(release_changes::batch.eq(batch))
        .order(release_changes::id.asc())
        .select(ChangeRow::as_select())
        .load(c))?)
}
