//! Release-table operations shared by the API, the console and the CLI: audited writes
//! (then the snapshot is reloaded), dry runs with their impact on active instances, what an
//! instance is told before and after, and reverts.

use chrono::{Duration, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use crate::db::models::active_versions;
use crate::db::models::release_changes::{self, Actor, ChangeRow, Expect, WriteError};
use crate::db::models::releases;
use crate::db::{AnyConnection, Db, DbError};
use crate::domain::release::Release;
use crate::domain::release_edit::{self, Edit, EditError, FieldChange, Mode};
use crate::domain::verdict::{ReleaseTable, Severity, Verdict};
use crate::domain::version::Version;
use crate::error::ApiError;
use crate::render::{badge_svg, BadgeKind};
use crate::snapshot::Releases;

/// Days of version checks and Service Pings that make an instance "active".
pub const ACTIVE_WINDOW_DAYS: i64 = 28;

/// Applies edits (audited, one transaction) and reloads the snapshot when anything changed.
/// Takes the store and the snapshot rather than the app state, so this module stays below
/// the HTTP layer that calls it.
pub async fn apply(
    db: &Db,
    releases: &Releases,
    edits: Vec<Edit>,
    expect: Vec<Expect>,
    actor: Actor,
) -> Result<Vec<ChangeRow>, WriteError> {
    let written = db
        .run(move |conn| Ok(release_changes::write_edits(conn, &edits, &expect, &actor)))
        .await??;
    if !written.is_empty() {
        releases.reload(db).await?;
    }
    Ok(written)
}

/// The JSON error for a write that did not happen.
pub fn api_error(err: WriteError) -> ApiError {
    match err {
        WriteError::Edit(e @ EditError::Exists(_)) => ApiError::Conflict(e.to_string()),
        WriteError::Edit(e @ EditError::Missing(_)) => ApiError::NotFound(e.to_string()),
        WriteError::Stale(changed) => ApiError::Conflict(stale_message(&changed)),
        WriteError::Db(e) => e.into(),
    }
}

/// "17.9.2 security: was none, is now critical; …"
pub fn stale_message(changed: &[FieldChange]) -> String {
    let parts: Vec<String> = changed
        .iter()
        .map(|c| {
            format!(
                "{} {}: was {}, is now {}",
                c.version,
                c.field,
                c.old.as_deref().unwrap_or("(empty)"),
                c.new.as_deref().unwrap_or("(empty)")
            )
        })
        .collect();
    format!(
        "the release changed since the form was loaded, nothing was saved: {}",
        parts.join("; ")
    )
}

/// What an instance sees for one state of the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct InstanceState {
    /// `success`, `warning` or `danger`.
    pub severity: &'static str,
    /// GitLab shows the critical modal.
    pub critical: bool,
}

impl InstanceState {
    fn of(table: &ReleaseTable, version: &Version) -> InstanceState {
        let verdict = table.verdict(version);
        InstanceState {
            severity: verdict.severity.as_str(),
            critical: verdict.critical_vulnerability,
        }
    }

    /// The badge words, e.g. `update asap (critical modal)`.
    pub fn label(&self) -> String {
        let words = match self.severity {
            "success" => "up-to-date",
            "warning" => "update available",
            _ => "update asap",
        };
        if self.critical {
            format!("{words} (critical modal)")
        } else {
            words.to_string()
        }
    }
}

/// Instances moving from one state to another.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    /// State before.
    pub from: InstanceState,
    /// State after.
    pub to: InstanceState,
    /// Active instances moving.
    pub installations: u64,
    /// Of them, reporting through Service Ping (the rest are seen by version checks only).
    pub with_service_ping: u64,
    /// Lowest and highest version among them.
    pub versions: String,
    /// One sentence for people.
    pub summary: String,
}

/// Per minor line.
#[derive(Debug, Clone, Serialize)]
pub struct LineImpact {
    /// `17.9`.
    pub line: String,
    /// Active instances on the line.
    pub active: u64,
    /// Of them, changing state.
    pub installations_changing: u64,
    /// Newly `danger`.
    pub to_danger: u64,
    /// Newly shown the critical modal.
    pub to_critical: u64,
}

/// How many active instances (last 28 days of version checks and Service Pings, one per
/// hostname on the version of its latest report) change state.
#[derive(Debug, Clone, Serialize)]
pub struct Impact {
    /// Days counted.
    pub window_days: i64,
    /// Active instances known.
    pub active_installations: u64,
    /// Instances whose badge or modal changes.
    pub installations_changing: u64,
    /// Instances that were not `danger` and will be.
    pub to_danger: u64,
    /// Instances that did not see the critical modal and will.
    pub to_critical: u64,
    /// Instances that were `danger` and no longer are (e.g. a revert).
    pub from_danger: u64,
    /// Per minor line that has a change, newest first.
    pub per_line: Vec<LineImpact>,
    /// Each from → to movement.
    pub transitions: Vec<Transition>,
}

/// Counts the impact of going from `before` to `after` on the active population. Blocking.
pub fn impact(
    conn: &mut AnyConnection,
    before: &ReleaseTable,
    after: &ReleaseTable,
) -> Result<Impact, DbError> {
    let since = (Utc::now() - Duration::days(ACTIVE_WINDOW_DAYS)).naive_utc();
    let active = active_versions::active_since(conn, since)?;
    let mut by_version: HashMap<String, (u64, u64)> = HashMap::new();
    for (_, version, ping) in &active {
        let entry = by_version.entry(version.clone()).or_default();
        entry.0 += 1;
        entry.1 += u64::from(*ping);
    }
    let mut impact = Impact {
        window_days: ACTIVE_WINDOW_DAYS,
        active_installations: active.len() as u64,
        installations_changing: 0,
        to_danger: 0,
        to_critical: 0,
        from_danger: 0,
        per_line: Vec::new(),
        transitions: Vec::new(),
    };
    let mut lines: BTreeMap<(u64, u64), LineImpact> = BTreeMap::new();
    let mut moves: BTreeMap<(InstanceState, InstanceState), (u64, u64, Version, Version)> =
        BTreeMap::new();
    for (text, (count, pings)) in by_version {
        let Ok(version) = Version::parse(&text) else {
            continue;
        };
        let (old, new) = (
            InstanceState::of(before, &version),
            InstanceState::of(after, &version),
        );
        let line = lines.entry(version.line()).or_insert_with(|| LineImpact {
            line: format!("{}.{}", version.major(), version.minor()),
            active: 0,
            installations_changing: 0,
            to_danger: 0,
            to_critical: 0,
        });
        line.active += count;
        if old == new {
            continue;
        }
        let to_danger = old.severity != "danger" && new.severity == "danger";
        let to_critical = !old.critical && new.critical;
        impact.installations_changing += count;
        line.installations_changing += count;
        if to_danger {
            impact.to_danger += count;
            line.to_danger += count;
        }
        if to_critical {
            impact.to_critical += count;
            line.to_critical += count;
        }
        if old.severity == "danger" && new.severity != "danger" {
            impact.from_danger += count;
        }
        let entry = moves
            .entry((old, new))
            .or_insert((0, 0, version.clone(), version.clone()));
        entry.0 += count;
        entry.1 += pings;
        if version < entry.2 {
            entry.2 = version.clone();
        }
        if version > entry.3 {
            entry.3 = version;
        }
    }
    impact.per_line = lines
        .into_values()
        .rev()
        .filter(|l| l.installations_changing > 0)
        .collect();
    impact.transitions = moves
        .into_iter()
        .map(|((from, to), (n, pings, low, high))| {
            let versions = if low == high {
                low.to_string()
            } else {
                format!("{low}–{high}")
            };
            Transition {
                summary: format!(
                    "{n} installation(s) on {versions} go from {} to {}",
                    from.label(),
                    to.label()
                ),
                from,
                to,
                installations: n,
                with_service_ping: pings,
                versions,
            }
        })
        .collect();
    Ok(impact)
}

/// A dry run: the changes `edits` would make and their impact. Blocking; changes nothing.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    /// Field changes that would be recorded.
    pub changes: Vec<FieldChange>,
    /// Their effect on active instances.
    pub impact: Impact,
    /// The table after the edits (for previews); not serialised.
    #[serde(skip)]
    pub after: Vec<Release>,
}

/// Computes a dry run against the store's current table. Blocking.
pub fn dry_run(
    conn: &mut AnyConnection,
    edits: &[Edit],
) -> Result<Result<DryRun, EditError>, DbError> {
    let current = releases::list_domain(conn)?;
    let (after, changes) = match release_edit::apply_all(&current, edits, Utc::now().date_naive()) {
        Ok(done) => done,
        Err(e) => return Ok(Err(e)),
    };
    let before_table = ReleaseTable::new(current);
    let after_table = ReleaseTable::new(after.clone());
    let impact = impact(conn, &before_table, &after_table)?;
    Ok(Ok(DryRun {
        changes,
        impact,
        after,
    }))
}

/// What GitLab shows an admin of `version` for one state of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Told {
    /// The `check.json` answer.
    pub check_json: Verdict,
    /// The badge, as SVG.
    pub badge_svg: String,
    /// The modal GitLab shows when `critical_vulnerability` is true (else `null`).
    pub modal: Option<Modal>,
}

/// GitLab's critical-release modal, in its words.
#[derive(Debug, Clone, Serialize)]
pub struct Modal {
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// "Additional information: …" when the advisory has text.
    pub details: Option<String>,
}

/// What an instance on `version` is told by `table`.
pub fn told(table: &ReleaseTable, version: &Version) -> Told {
    let verdict = table.verdict(version);
    let kind = match verdict.severity {
        Severity::Success => BadgeKind::UpToDate,
        Severity::Warning => BadgeKind::UpdateAvailable,
        Severity::Danger => BadgeKind::UpdateAsap,
    };
    let modal = verdict.critical_vulnerability.then(|| {
        let targets = verdict.latest_stable_versions.join(", ");
        let body = if targets.is_empty() {
            format!(
                "You are currently on version {version}! We strongly recommend upgrading your \
                 GitLab installation immediately."
            )
        } else {
            format!(
                "You are currently on version {version}! We strongly recommend upgrading your \
                 GitLab installation to one of the following versions immediately: {targets}."
            )
        };
        Modal {
            title: "Important notice - Critical patch release".into(),
            body,
            details: Some(verdict.details.clone())
                .filter(|d| !d.trim().is_empty())
                .map(|d| format!("Additional information: {d}")),
        }
    });
    Told {
        badge_svg: badge_svg(kind),
        check_json: verdict,
        modal,
    }
}

/// A revert: its edits, the values the fields must still hold, and the note recorded.
pub type RevertPlan = (Vec<Edit>, Vec<Expect>, String);

/// Plans the revert of one change (or, with `whole_batch`, of its whole operation): edits
/// that put every field back, and expectations that each field still holds what the change
/// wrote (a later change must be reverted first). Blocking.
pub fn plan_revert(
    conn: &mut AnyConnection,
    change_id: i64,
    whole_batch: bool,
) -> Result<Result<RevertPlan, String>, DbError> {
    let Some(change) = release_changes::find(conn, change_id)? else {
        return Ok(Err(format!("there is no change {change_id}")));
    };
    let mut entries = if whole_batch {
        release_changes::batch_entries(conn, &change.batch)?
    } else {
        vec![change.clone()]
    };
    // A creation or deletion is reverted as a whole: its field entries belong together.
    if entries.iter().any(|e| e.field == "version") || change.field == "version" {
        let versions: Vec<String> = entries
            .iter()
            .filter(|e| e.field == "version")
            .map(|e| e.version.clone())
            .collect();
        let batch = release_changes::batch_entries(conn, &change.batch)?;
        for e in batch {
            if versions.contains(&e.version) && !entries.iter().any(|x| x.id == e.id) {
                entries.push(e);
            }
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.id));
    let created: Vec<String> = entries
        .iter()
        .filter(|e| e.field == "version" && e.old.is_none())
        .map(|e| e.version.clone())
        .collect();
    let mut edits: Vec<Edit> = Vec::new();
    let mut expect: Vec<Expect> = Vec::new();
    for e in &entries {
        let version = match Version::parse(&e.version) {
            Ok(v) => v,
            Err(err) => return Ok(Err(format!("change {} names {}: {err}", e.id, e.version))),
        };
        let field: &'static str = match release_edit::FIELDS.iter().find(|f| **f == e.field) {
            Some(f) => f,
            None => {
                return Ok(Err(format!(
                    "change {} has an unknown field {}",
                    e.id, e.field
                )))
            }
        };
        expect.push(Expect {
            version: e.version.clone(),
            field,
            value: e.new.clone(),
        });
        let position = edits.iter().position(|x| x.version == version);
        let edit = match position {
            Some(i) => &mut edits[i],
            None => {
                edits.push(Edit::new(version.clone(), Mode::Update));
                edits.last_mut().expect("just pushed")
            }
        };
        let bad = |what: &str| Err(format!("change {} holds an unreadable {what}", e.id));
        if created.contains(&e.version) {
            // Reverting a creation removes the release; its field entries need no values.
            edit.mode = Mode::Delete;
            continue;
        }
        match field {
            "version" => {
                edit.mode = if e.old.is_none() {
                    Mode::Delete
                } else {
                    Mode::Create
                };
            }
            "released_on" => match e.old.as_deref().map(|d| d.parse()) {
                Some(Ok(day)) => edit.released_on = Some(day),
                _ => return Ok(bad("day")),
            },
            "security" => match e.old.as_deref().map(|s| s.parse()) {
                Some(Ok(level)) => edit.security = Some(level),
                _ => return Ok(bad("level")),
            },
            "advisory" => edit.advisory = Some(e.old.clone()),
            _ => edit.details = Some(e.old.clone().unwrap_or_default()),
        }
    }
    let what = if whole_batch {
        format!("revert of batch {} (change {change_id})", change.batch)
    } else {
        format!("revert of change {change_id}")
    };
    Ok(Ok((edits, expect, what)))
}
