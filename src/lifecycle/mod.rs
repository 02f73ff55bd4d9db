//! Privacy and data lifecycle: `version-app erase` and the retention pass (`retention.rs`).
//! The SQL lives in `db/models/erasure.rs` and `db/models/retention.rs`; what is stored and
//! for how long is in `docs/privacy.md`.

pub mod retention;

use std::io::Write;

use crate::config::Settings;
use crate::db::models::erasure::{self, Outcome, Subject};
use crate::db::{AnyConnection, DbError};
use crate::domain::pseudonym::SecretKey;

/// `version-app erase`: which installation, and whether to erase or only ask.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["hostname", "uuid"])))]
pub struct EraseArgs {
    /// The installation's hostname (as in checks' Referer or the payload's `hostname`).
    #[arg(long)]
    pub hostname: Option<String>,
    /// The installation's uuid.
    #[arg(long)]
    pub uuid: Option<String>,
    /// Only answer whether this hostname or uuid was erased (exit 0 if so, 1 if not).
    #[arg(long)]
    pub check: bool,
}

impl EraseArgs {
    fn subject(&self) -> Subject {
        match (&self.hostname, &self.uuid) {
            (Some(h), _) => Subject::Hostname(h.clone()),
            (None, Some(u)) => Subject::Uuid(u.clone()),
            (None, None) => unreachable!("clap requires one"),
        }
    }
}

/// The key of erasure entries, or why there is none.
pub fn erasure_key(settings: &Settings) -> anyhow::Result<&SecretKey> {
    settings.privacy.erasure_key.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "erase needs the `erasure_key` setting (VERSION_APP_ERASURE_KEY, at least {} bytes): \
             the erasure entry keeps only an HMAC of the hostname or uuid under that key, so \
             that \"was X erased?\" can be answered later; nothing was changed",
            SecretKey::MIN_LEN
        )
    })
}

/// Who runs the CLI, for the erasure entry: `cli:` and the OS user.
fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// Erases the subject's installation in one transaction and records the erasure entry
/// (keyed hashes under `key`, and `erased_by`): the one code path of `version-app erase` and
/// the console's erase page.
pub fn erase_installation(
    conn: &mut AnyConnection,
    key: &SecretKey,
    subject: &Subject,
    erased_by: &str,
) -> Result<Outcome, DbError> {
    let now = chrono::Utc::now().naive_utc();
    erasure::erase(conn, subject, &|input| key.pseudonym(input), erased_by, now)
}

/// Runs `version-app erase`; an unknown installation or a check that finds nothing is an
/// error (non-zero exit).
pub fn erase_command(
    settings: &Settings,
    conn: &mut AnyConnection,
    args: &EraseArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let key = erasure_key(settings)?;
    let subject = args.subject();
    let label = match &subject {
        Subject::Hostname(h) => format!("hostname {h}"),
        Subject::Uuid(u) => format!("uuid {u}"),
    };
    if args.check {
        let found = erasure::find_by_hash(conn, &key.pseudonym(&subject.hash_input()))?;
        return match found.first() {
            Some((id, at)) => {
                writeln!(
                    out,
                    "{label} was erased at {} (erasure {id})",
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                )?;
                Ok(())
            }
            None => anyhow::bail!("no erasure of {label} is recorded"),
        };
    }
    match erase_installation(conn, key, &subject, &cli_actor())? {
        Outcome::Unknown => {
            anyhow::bail!("nothing in the store belongs to {label}; nothing was changed")
        }
        Outcome::Erased {
            installation,
            removed,
            erasure_id,
        } => {
            writeln!(
                out,
                "erased {label}: {} hostname(s), {} uuid(s), {} unique instance id(s)",
                installation.hostnames.len(),
                installation.uuids.len(),
                installation.unique_ids.len()
            )?;
            for (table, n) in &removed {
                writeln!(out, "  {table}: {n} row(s) removed")?;
            }
            writeln!(out, "recorded as erasure {erasure_id} (keyed hashes only)")?;
            Ok(())
        }
    }
}
