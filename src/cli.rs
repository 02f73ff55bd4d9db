//! The command line: `serve` (default), `migrate`, `releases …`, `token …`, `healthcheck`.

use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{self, Scope};
use crate::config::Settings;
use crate::db::models::tokens;
use crate::db::Db;
use crate::startup::Application;

/// version-app: GitLab version checks, Service Ping ingest and the release table.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// TOML settings file (also `VERSION_APP_CONFIG`); environment variables override it.
    #[arg(long, global = true, env = "VERSION_APP_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do; serves when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Bring the store's schema up to date and exit.
    Migrate,
    /// Read or change the release table.
    #[command(subcommand)]
    Releases(ReleasesCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage console accounts.
    #[command(subcommand)]
    User(crate::console::accounts::UserCommand),
    /// Exit 0 when the server on the configured address reports ready (for container health checks).
    Healthcheck,
    /// Stream Service Ping submissions recorded in a date range to standard output.
    Export {
        /// First day (inclusive): YYYY-MM-DD or a UTC timestamp.
        #[arg(long, value_parser = crate::export::parse_bound)]
        from: chrono::NaiveDateTime,
        /// Last bound (exclusive): YYYY-MM-DD or a UTC timestamp.
        #[arg(long, value_parser = crate::export::parse_bound)]
        to: chrono::NaiveDateTime,
        /// ndjson (verbatim payloads) or csv (summary plus --keys columns).
        #[arg(long, value_enum, default_value = "ndjson")]
        format: crate::export::ExportFormat,
        /// Comma-separated metric key paths to add as CSV columns.
        #[arg(long, value_delimiter = ',')]
        keys: Vec<String>,
        /// Replace hostnames, uuids, unique instance ids, licensee names and e-mails and
        /// licence fingerprints with HMAC-SHA256 under `pseudonymise_key` (docs/privacy.md).
        #[arg(long)]
        pseudonymise: bool,
    },
    /// Erase every row of one installation in one transaction, or `--check` whether it was.
    Erase(crate::lifecycle::EraseArgs),
    /// Retention of every kind of data (docs/privacy.md).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Insights rollups: fold in new submissions, or rebuild them from scratch.
    #[command(subcommand)]
    Insights(InsightsCommand),
    /// Metric definitions: `metrics import FILE.yml` (GitLab's metric definitions export).
    #[command(subcommand)]
    Metrics(MetricsCommand),
}

/// `metrics …`
#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Replace the stored metric definitions by a YAML export; a changed time frame applies
    /// at once (period values are computed when asked).
    Import {
        /// The YAML file (a list of definitions), at most 32 MiB.
        file: PathBuf,
        /// Accepted for scripts written when an import rebuilt the rollups; nothing is
        /// rebuilt any more.
        #[arg(long, hide = true)]
        no_rebuild: bool,
    },
}

/// `insights …`
#[derive(Debug, Subcommand)]
pub enum InsightsCommand {
    /// Fold submissions not yet in the rollups into them (what the background job does).
    Refresh,
    /// Empty the rollups and recompute them from every stored submission.
    Rebuild,
}

/// `retention …`
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Run one retention pass now and print what it removed.
    Run,
}

pub use crate::cli_releases::ReleasesCommand;

/// `token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once, alone on the last line.
    Create {
        /// What it may do.
        #[arg(long, value_enum)]
        scope: Scope,
        /// A name to recognise it by.
        #[arg(long, default_value = "api token")]
        name: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke {
        /// Token id from `token list`.
        id: i64,
    },
}

/// Runs the parsed command line; errors are printed by `main` and exit non-zero.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
            Ok(())
        }
        Command::Healthcheck => healthcheck(&settings),
        other => tokio::task::spawn_blocking(move || run_store_command(settings, other)).await?,
    }
}

/// Commands that only talk to the store; each first brings the schema up to date.
fn run_store_command(settings: Settings, command: Command) -> anyhow::Result<()> {
    // One pooled connection (issue 8, #5): r2d2 opens connections on its own threads, and a
    // larger pool left a second one still inside PQconnectdb when the command returned, so
    // OpenSSL's exit-time cleanup raced it and the process crashed at exit (SIGSEGV) on a TLS
    // connection. With one connection, the only connect is the one this thread waited for.
    let mut settings = settings;
    settings.store.pool_size = std::num::NonZeroU32::MIN;
    let db = Db::connect(&settings.store)?;
    let applied = db.migrate_with(settings.store.allow_newer_schema)?;
    let mut out = std::io::stdout().lock();
    let mut conn = db.get()?;
    match command {
        Command::Migrate => {
            writeln!(out, "{} migration(s) applied", applied.len())?;
            for name in applied {
                writeln!(out, "  {name}")?;
            }
        }
        Command::Releases(command) => {
            crate::cli_releases::run(&mut conn, command, &mut out, &settings)?;
        }
        Command::Token(TokenCommand::Create { scope, name }) => {
            let issued = auth::issue(&mut conn, &name, scope)?;
            writeln!(
                out,
                "created token {} ({}) with scope {}; it is shown only once:",
                issued.row.id, issued.row.name, issued.row.scope
            )?;
            writeln!(out, "{}", issued.secret)?;
        }
        Command::Token(TokenCommand::List) => {
            writeln!(
                out,
                "{:<5} {:<16} {:<20} {:<20} status",
                "id", "scope", "name", "created"
            )?;
            for t in tokens::list(&mut conn)? {
                let status = match t.revoked_at {
                    Some(at) => format!("revoked {at}"),
                    None => "active".into(),
                };
                writeln!(
                    out,
                    "{:<5} {:<16} {:<20} {:<20} {status}",
                    t.id,
                    t.scope,
                    t.name,
                    t.created_at.format("%Y-%m-%d %H:%M:%S")
                )?;
            }
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            if tokens::revoke(&mut conn, id)? {
                writeln!(out, "revoked token {id}")?;
            } else {
                anyhow::bail!("no active token with id {id}");
            }
        }
        Command::Export {
            from,
            to,
            format,
            keys,
            pseudonymise,
        } => {
            let key = match (pseudonymise, &settings.privacy.pseudonymise_key) {
                (false, _) => None,
                (true, Some(key)) => Some(key),
                (true, None) => anyhow::bail!(
                    "--pseudonymise needs the `pseudonymise_key` setting \
                     (VERSION_APP_PSEUDONYMISE_KEY, at least {} bytes): pseudonyms are \
                     HMAC-SHA256 under that key, and without one nothing would hide the \
                     identifiers; nothing was exported",
                    crate::domain::pseudonym::SecretKey::MIN_LEN
                ),
            };
            anyhow::ensure!(from < to, "--from must be before --to");
            let mut buffered = std::io::BufWriter::new(out);
            // Analysts' reads go to the read replica when one is configured and usable.
            let mut read_conn = match settings.store.read_url {
                Some(_) => {
                    crate::read_replica::ReadDb::new(db, &settings, &prometheus::Registry::new())?
                        .replica_blocking()
                }
                None => None,
            };
            let conn = read_conn.as_mut().unwrap_or(&mut conn);
            let done = crate::export::export(conn, from, to, format, &keys, key, &mut buffered)?;
            if done.without_payload > 0 {
                eprintln!(
                    "{} submission(s) skipped: their raw payload was removed by retention",
                    done.without_payload
                );
            }
            eprintln!("{} submission(s) exported", done.written);
        }
        Command::Erase(args) => {
            crate::lifecycle::erase_command(&settings, &mut conn, &args, &mut out)?;
        }
        Command::Retention(RetentionCommand::Run) => {
            drop(conn);
            let now = chrono::Utc::now().naive_utc();
            let report =
                crate::lifecycle::retention::run_pass(&db, &settings, now, &|| false, None)?;
            for (kind, n) in report.removed {
                writeln!(out, "{kind}: {n} row(s) removed")?;
            }
        }
        Command::Insights(command) => {
            // The rollup code takes its own connections, and the CLI's pool has one.
            drop(conn);
            let started = std::time::Instant::now();
            let (verb, processed) = match command {
                InsightsCommand::Refresh => (
                    "refreshed",
                    crate::insights::with_job_lock(&db, crate::insights::refresh)?,
                ),
                InsightsCommand::Rebuild => (
                    "rebuilt",
                    crate::insights::with_job_lock(&db, crate::insights::rebuild)?,
                ),
            };
            writeln!(
                out,
                "insights {verb}: {processed} submission(s) processed in {:.1} s",
                started.elapsed().as_secs_f64()
            )?;
        }
        Command::Metrics(MetricsCommand::Import { file, .. }) => {
            drop(conn);
            let text = crate::insights::definitions::read_file(&file)?;
            let report = crate::insights::definitions::import(&db, &text)?;
            crate::insights::definitions::print_report(&report, &mut out)?;
        }
        Command::User(command) => crate::console::accounts::run(&mut conn, command, &mut out)?,
        Command::Serve | Command::Healthcheck => unreachable!("handled in run"),
    }
    Ok(())
}

/// Asks `/-/ready` on the configured address with a bare HTTP/1.0 request, so container
/// images need no curl.
fn healthcheck(settings: &Settings) -> anyhow::Result<()> {
    let mut addr = settings.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = Duration::from_secs(5);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(stream, "GET /-/ready HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.take(4096).read_to_string(&mut response)?;
    let status_line = response.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        println!("ready");
        Ok(())
    } else {
        anyhow::bail!("not ready: {status_line}")
    }
}
