//! `version-app releases …`: read and change the release table from the command line.
//! Every change goes through the audited writer (`via` = `cli`, or `import`), with the OS
//! user as the actor; `--dry-run` prints the changes and their impact without saving.

use clap::Subcommand;
use std::io::{Read, Write};
use std::path::PathBuf;

use crate::config::Settings;
use crate::db::models::release_changes::{self, Actor, ChangeRow};
use crate::db::models::releases;
use crate::db::AnyConnection;
use crate::domain::csv_import::{parse_release_version, parse_releases_csv};
use crate::domain::release::SecurityLevel;
use crate::domain::release_edit::{Edit, Mode, Via};
use crate::release_ops;
use crate::release_sync::{self, SyncOptions};

/// `releases …`
#[derive(Debug, Subcommand)]
pub enum ReleasesCommand {
    /// List releases, newest first.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Add one release.
    Add {
        /// Version, `X.Y.Z`.
        version: String,
        /// Publication day, YYYY-MM-DD (default today).
        #[arg(long, value_parser = parse_day)]
        released_on: Option<chrono::NaiveDate>,
        /// none, non_critical or critical (GitLab's old 0/1/2 and not_set also read).
        #[arg(long, default_value = "none")]
        security: SecurityLevel,
        /// Advisory batch id (default: date and level).
        #[arg(long)]
        advisory: Option<String>,
        /// Advisory text shown to admins.
        #[arg(long)]
        details: Option<String>,
        /// Print the changes and their impact; save nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Set a release's security level (and optionally its advisory and text).
    SetSecurity {
        /// Version, `X.Y.Z`.
        version: String,
        /// none, non_critical or critical (GitLab's old 0/1/2 and not_set also read).
        level: SecurityLevel,
        /// Advisory batch id.
        #[arg(long)]
        advisory: Option<String>,
        /// Advisory text shown to admins.
        #[arg(long)]
        details: Option<String>,
        /// Print the changes and their impact; save nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Import `version,released_on,security,advisory[,details]` CSV; rows are upserted by
    /// version in one transaction (a broken file changes nothing).
    Import {
        /// The CSV file (`-` for standard input).
        file: PathBuf,
        /// Print the changes and their impact; save nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the whole table as CSV on standard output (what `import` reads back).
    Export,
    /// Print the history of changes, newest first.
    History {
        /// Only this release.
        #[arg(long)]
        version: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Pull an upstream version-app's release table (`GET /api/v1/versions`, all pages) and
    /// apply the difference in one transaction (via `sync`; upstream wins for the fields it
    /// carries, local additions stay). Prints what it applied; on failure changes nothing
    /// and exits non-zero with the reason.
    Sync {
        /// The upstream, e.g. `https://version.example.com` (default: `release_sync_url`).
        #[arg(long = "from", value_name = "URL")]
        from: Option<String>,
        /// Accept security levels the upstream lowers (else such a sync is refused).
        #[arg(long)]
        allow_downgrade: bool,
        /// Print the changes and their impact; save nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Revert one change (by id from `history`), or its whole operation with `--batch`.
    Revert {
        /// Change id.
        change_id: i64,
        /// Revert every change of the same operation.
        #[arg(long)]
        batch: bool,
        /// Print the changes and their impact; save nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The CLI's actor name: the OS user, so the history says who ran the command.
fn cli_actor(via: Via) -> Actor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    Actor::new(format!("cli:{user}"), via)
}

fn print_changes(out: &mut impl Write, rows: &[ChangeRow]) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<6} {:<19} {:<18} {:<7} {:<10} {:<12} change",
        "id", "at", "actor", "via", "version", "field"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<6} {:<19} {:<18} {:<7} {:<10} {:<12} {} -> {}{}",
            r.id,
            r.at.format("%Y-%m-%d %H:%M:%S"),
            r.actor,
            r.via,
            r.version,
            r.field,
            r.old.as_deref().unwrap_or("(none)"),
            r.new.as_deref().unwrap_or("(none)"),
            r.note
                .as_deref()
                .map(|n| format!("  [{n}]"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// Applies edits, or with `dry_run` prints what they would change and whom they affect.
fn write_or_preview(
    conn: &mut AnyConnection,
    out: &mut impl Write,
    edits: &[Edit],
    expect: &[release_changes::Expect],
    actor: &Actor,
    dry_run: bool,
) -> anyhow::Result<Vec<ChangeRow>> {
    if dry_run {
        let run = release_ops::dry_run(conn, edits)?.map_err(anyhow::Error::msg)?;
        writeln!(out, "dry run: nothing was saved")?;
        for c in &run.changes {
            writeln!(
                out,
                "  {} {}: {} -> {}",
                c.version,
                c.field,
                c.old.as_deref().unwrap_or("(none)"),
                c.new.as_deref().unwrap_or("(none)")
            )?;
        }
        let i = &run.impact;
        writeln!(
            out,
            "impact (last {} days, {} active installation(s)): {} change state, {} to danger, {} to critical",
            i.window_days, i.active_installations, i.installations_changing, i.to_danger, i.to_critical
        )?;
        for t in &i.transitions {
            writeln!(out, "  {}", t.summary)?;
        }
        return Ok(Vec::new());
    }
    release_changes::write_edits(conn, edits, expect, actor).map_err(|e| match e {
        release_changes::WriteError::Stale(s) => anyhow::anyhow!(release_ops::stale_message(&s)),
        other => anyhow::anyhow!(other),
    })
}

/// `releases sync`: fetch, plan, then write (or preview) like every other CLI change.
fn sync(
    conn: &mut AnyConnection,
    out: &mut impl Write,
    settings: &Settings,
    from: Option<&str>,
    allow_downgrade: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    let mut options = SyncOptions::from_settings(settings, from).map_err(anyhow::Error::msg)?;
    options.allow_downgrade |= allow_downgrade;
    let fetched = release_sync::fetch::fetch_all(&options.url, &options.caps)?;
    let mut planned = release_sync::plan_sync(conn, &options, &fetched)?;
    // The actor stays `sync:URL` (where the values came from); the note says who ran it.
    let by = cli_actor(Via::Sync).name;
    planned.actor.note = Some(match planned.actor.note.take() {
        Some(note) => format!("{note}; run by {by}"),
        None => format!("run by {by}"),
    });
    writeln!(
        out,
        "read {} release(s) in {} page(s) from {}",
        planned.upstream_versions, planned.pages, options.url
    )?;
    for d in &planned.downgrades {
        writeln!(out, "security downgrade (allowed): {d}")?;
    }
    if dry_run {
        write_or_preview(conn, out, &planned.edits, &[], &planned.actor, true)?;
        return Ok(());
    }
    let written = release_sync::apply(conn, &planned)?;
    let mut changed: Vec<&str> = written.iter().map(|c| c.version.as_str()).collect();
    changed.dedup();
    writeln!(
        out,
        "applied {} field change(s) to {} release(s)",
        written.len(),
        changed.len()
    )?;
    if !written.is_empty() {
        print_changes(out, &written)?;
    }
    Ok(())
}

/// Runs a `releases` command against the store.
pub fn run(
    conn: &mut AnyConnection,
    command: ReleasesCommand,
    out: &mut impl Write,
    settings: &Settings,
) -> anyhow::Result<()> {
    match command {
        ReleasesCommand::Sync {
            from,
            allow_downgrade,
            dry_run,
        } => sync(
            conn,
            out,
            settings,
            from.as_deref(),
            allow_downgrade,
            dry_run,
        )?,
        ReleasesCommand::List { limit } => {
            let mut all = releases::list_domain(conn)?;
            all.sort_by(|a, b| b.version.cmp(&a.version));
            writeln!(
                out,
                "{:<10} {:<11} {:<13} advisory",
                "version", "released", "security"
            )?;
            for r in all.iter().take(limit) {
                let advisory = r.advisory_id().unwrap_or_default();
                writeln!(
                    out,
                    "{:<10} {:<11} {:<13} {advisory}",
                    r.version.to_string(),
                    r.released_on.to_string(),
                    r.security.as_str()
                )?;
            }
        }
        ReleasesCommand::Add {
            version,
            released_on,
            security,
            advisory,
            details,
            dry_run,
        } => {
            let version = parse_release_version(&version).map_err(anyhow::Error::msg)?;
            let released_on = released_on.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let mut edit = Edit::new(version.clone(), Mode::Create);
            edit.released_on = Some(released_on);
            edit.security = Some(security);
            edit.advisory = Some(advisory);
            edit.details = Some(details.unwrap_or_default());
            let written = write_or_preview(conn, out, &[edit], &[], &cli_actor(Via::Cli), dry_run)?;
            if !dry_run && !written.is_empty() {
                writeln!(out, "added {version}")?;
            }
        }
        ReleasesCommand::SetSecurity {
            version,
            level,
            advisory,
            details,
            dry_run,
        } => {
            let version = parse_release_version(&version).map_err(anyhow::Error::msg)?;
            let mut edit = Edit::new(version.clone(), Mode::Update);
            edit.security = Some(level);
            edit.advisory = advisory.map(|a| Some(a).filter(|a| !a.is_empty()));
            edit.details = details;
            write_or_preview(conn, out, &[edit], &[], &cli_actor(Via::Cli), dry_run)?;
            if !dry_run {
                writeln!(out, "{version} is now {level}")?;
            }
        }
        ReleasesCommand::Import { file, dry_run } => {
            let bytes = if file.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::stdin()
                    .take(crate::domain::csv_import::MAX_CSV_BYTES as u64 + 1)
                    .read_to_end(&mut buf)?;
                buf
            } else {
                std::fs::read(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
            };
            let parsed = parse_releases_csv(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}; nothing was imported", file.display()))?;
            let edits: Vec<Edit> = parsed.iter().map(Edit::replace_with).collect();
            let written =
                write_or_preview(conn, out, &edits, &[], &cli_actor(Via::Import), dry_run)?;
            if !dry_run {
                let mut changed: Vec<&str> = written.iter().map(|c| c.version.as_str()).collect();
                changed.dedup();
                writeln!(
                    out,
                    "imported {} release(s) from {}; {} changed ({} field change(s) recorded)",
                    parsed.len(),
                    file.display(),
                    changed.len(),
                    written.len()
                )?;
            }
        }
        ReleasesCommand::Export => {
            let mut all = releases::list_domain(conn)?;
            all.sort_by(|a, b| a.version.cmp(&b.version));
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(["version", "released_on", "security", "advisory", "details"])?;
            for r in &all {
                writer.write_record([
                    r.version.to_string(),
                    r.released_on.to_string(),
                    r.security.as_str().to_string(),
                    r.advisory.clone().unwrap_or_default(),
                    r.details.clone(),
                ])?;
            }
            writer.flush()?;
        }
        ReleasesCommand::History { version, limit } => {
            let version = version
                .map(|v| parse_release_version(&v).map(|v| v.to_string()))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let rows =
                release_changes::history(conn, version.as_deref(), limit.clamp(1, 100_000), None)?;
            print_changes(out, &rows)?;
        }
        ReleasesCommand::Revert {
            change_id,
            batch,
            dry_run,
        } => {
            let (edits, expect, note) =
                release_ops::plan_revert(conn, change_id, batch)?.map_err(anyhow::Error::msg)?;
            let mut actor = cli_actor(Via::Cli);
            actor.note = Some(note.clone());
            let written = write_or_preview(conn, out, &edits, &expect, &actor, dry_run)?;
            if !dry_run {
                writeln!(out, "{note}: {} field change(s) recorded", written.len())?;
                print_changes(out, &written)?;
            }
        }
    }
    Ok(())
}

/// `--released-on`: a calendar day. Security levels parse with `SecurityLevel`'s own
/// `FromStr` rather than a clap value enum, because it also reads GitLab's old spellings.
fn parse_day(text: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a YYYY-MM-DD date"))
}
