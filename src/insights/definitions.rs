//! `version-app metrics import FILE.yml`: GitLab's metric definitions replace the stored ones
//! (all or nothing), and when that changes the time frame of a key path the store has
//! received, the rollups are rebuilt so every period value follows the new rule.

use std::io::Read;
use std::path::Path;

use crate::db::models::insights_catalogue as q;
use crate::db::Db;
use crate::domain::insights::definitions::{parse, MAX_FILE_BYTES};
use crate::domain::insights::time_frame::effective;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Definitions stored.
    pub definitions: usize,
    /// Received key paths whose time frame changed.
    pub changed_keys: Vec<String>,
}

/// Reads a definitions file, at most [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| anyhow::anyhow!("cannot read {} as UTF-8 text: {e}", path.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_FILE_BYTES,
        "{} is larger than {} MiB; nothing was imported",
        path.display(),
        MAX_FILE_BYTES / (1024 * 1024)
    );
    Ok(text)
}

/// Imports `text` under the rollup job's lock. A malformed file changes nothing. Nothing is
/// rebuilt: period values are computed when asked, so a new time frame applies at once.
pub fn import(db: &Db, text: &str) -> anyhow::Result<ImportReport> {
    let defs = parse(text).map_err(|e| anyhow::anyhow!("{e}; nothing was imported"))?;
    super::with_job_lock(db, |db| {
        let mut conn = db.get()?;
        let keys = q::list_keys_with_definitions(&mut conn)?;
        let before: std::collections::HashMap<String, _> = keys
            .iter()
            .map(|(_, path, defined)| (path.clone(), effective(path, defined.as_deref()).0))
            .collect();
        q::replace_definitions(&mut conn, &defs)?;
        let mut changed_keys: Vec<String> = q::list_keys_with_definitions(&mut conn)?
            .into_iter()
            .filter(|(_, path, defined)| {
                before.get(path) != Some(&effective(path, defined.as_deref()).0)
            })
            .map(|(_, path, _)| path)
            .collect();
        changed_keys.sort();
        Ok(ImportReport {
            definitions: defs.len(),
            changed_keys,
        })
    })
}

/// What `metrics import` prints.
pub fn print_report(report: &ImportReport, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "metrics import: {} definition(s) stored",
        report.definitions
    )?;
    if report.changed_keys.is_empty() {
        return writeln!(
            out,
            "no received key path changed its time frame; the rollups stand"
        );
    }
    let shown: Vec<&str> = report
        .changed_keys
        .iter()
        .take(20)
        .map(String::as_str)
        .collect();
    writeln!(
        out,
        "{} received key path(s) changed time frame: {}{}",
        report.changed_keys.len(),
        shown.join(", "),
        if report.changed_keys.len() > shown.len() {
            ", …"
        } else {
            ""
        }
    )?;
    if report.changed_keys.is_empty() {
        Ok(())
    } else {
        writeln!(out, "the new time frames apply at once: nothing to rebuild")
    }
}
