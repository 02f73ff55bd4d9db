//! The command line: `serve` (default), `migrate`, `releases …`, `token …`, `healthcheck`.

use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{self, Scope};
use crate::config::Settings;
use crate::db::models::{releases, tokens};
use crate::db::Db;
use crate::domain::csv_import::{parse_release_version, parse_releases_csv};
use crate::domain::release::{Release, SecurityLevel};
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
        #[arg(long)]
        from: String,
        /// Last bound (exclusive): YYYY-MM-DD or a UTC timestamp.
        #[arg(long)]
        to: String,
        /// ndjson (verbatim payloads) or csv (summary plus --keys columns).
        #[arg(long, value_enum, default_value = "ndjson")]
        format: crate::export::ExportFormat,
        /// Comma-separated metric key paths to add as CSV columns.
        #[arg(long, value_delimiter = ',')]
        keys: Vec<String>,
    },
    /// Insights rollups: fold in new submissions, or rebuild them from scratch.
    #[command(subcommand)]
    Insights(InsightsCommand),
}

/// `insights …`
#[derive(Debug, Subcommand)]
pub enum InsightsCommand {
    /// Fold submissions not yet in the rollups into them (what the background job does).
    Refresh,
    /// Empty the rollups and recompute them from every stored submission.
    Rebuild,
}

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
        /// Publication day (default today).
        #[arg(long)]
        released_on: Option<String>,
        /// none, non_critical or critical.
        #[arg(long, default_value = "none")]
        security: String,
        /// Advisory batch id (default: date and level).
        #[arg(long)]
        advisory: Option<String>,
        /// Advisory text shown to admins.
        #[arg(long)]
        details: Option<String>,
    },
    /// Set a release's security level (and optionally its advisory and text).
    SetSecurity {
        /// Version, `X.Y.Z`.
        version: String,
        /// none, non_critical or critical.
        level: String,
        /// Advisory batch id.
        #[arg(long)]
        advisory: Option<String>,
        /// Advisory text shown to admins.
        #[arg(long)]
        details: Option<String>,
    },
    /// Import `version,released_on,security,advisory[,details]` CSV; rows are upserted by
    /// version in one transaction (a broken file changes nothing).
    Import {
        /// The CSV file (`-` for standard input).
        file: PathBuf,
    },
}

/// `token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once, alone on the last line.
    Create {
        /// What it may do (releases:write, insights:read).
        #[arg(long)]
        scope: String,
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
    let db = Db::connect(&settings)?;
    let applied = db.migrate()?;
    let mut out = std::io::stdout().lock();
    let mut conn = db.get()?;
    match command {
        Command::Migrate => {
            writeln!(out, "{} migration(s) applied", applied.len())?;
            for name in applied {
                writeln!(out, "  {name}")?;
            }
        }
        Command::Releases(ReleasesCommand::List { limit }) => {
            let mut all = releases::list_domain(&mut conn)?;
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
        Command::Releases(ReleasesCommand::Add {
            version,
            released_on,
            security,
            advisory,
            details,
        }) => {
            let version = parse_release_version(&version).map_err(anyhow::Error::msg)?;
            let released_on = match released_on {
                Some(d) => chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                    .map_err(|_| anyhow::anyhow!("--released-on `{d}` is not a YYYY-MM-DD date"))?,
                None => chrono::Utc::now().date_naive(),
            };
            let security: SecurityLevel = security.parse()?;
            let release = Release {
                version: version.clone(),
                released_on,
                security,
                advisory,
                details: details.unwrap_or_default(),
            };
            match releases::insert(&mut conn, &release)? {
                Some(_) => writeln!(out, "added {version}")?,
                None => anyhow::bail!("release {version} already exists"),
            }
        }
        Command::Releases(ReleasesCommand::SetSecurity {
            version,
            level,
            advisory,
            details,
        }) => {
            let version = parse_release_version(&version).map_err(anyhow::Error::msg)?;
            let change = releases::SecurityChange {
                security: level.parse()?,
                advisory: advisory.map(|a| Some(a).filter(|a| !a.is_empty())),
                details,
            };
            match releases::update_security(&mut conn, &version, &change)? {
                Some(row) => writeln!(out, "{} is now {}", row.version, row.security)?,
                None => anyhow::bail!("release {version} does not exist"),
            }
        }
        Command::Releases(ReleasesCommand::Import { file }) => {
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
            let written = releases::upsert_all(&mut conn, &parsed)?;
            writeln!(out, "imported {written} release(s) from {}", file.display())?;
        }
        Command::Token(TokenCommand::Create { scope, name }) => {
            let scope: Scope = scope.parse().map_err(anyhow::Error::msg)?;
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
        } => {
            let (from, to) = (
                crate::export::parse_bound(&from)?,
                crate::export::parse_bound(&to)?,
            );
            anyhow::ensure!(from < to, "--from must be before --to");
            let mut buffered = std::io::BufWriter::new(out);
            let done = crate::export::export(&mut conn, from, to, format, &keys, &mut buffered)?;
            if done.without_payload > 0 {
                eprintln!(
                    "{} submission(s) skipped: their raw payload was removed by retention",
                    done.without_payload
                );
            }
            eprintln!("{} submission(s) exported", done.written);
        }
        Command::Insights(command) => {
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
        Command::User(command) => crate::console::accounts::run(&mut conn, command, &mut out)?,
        Command::Serve | Command::Healthcheck => unreachable!("handled in run"),
    }
    Ok(())
}

/// Asks `/-/ready` on the configured address with a bare HTTP/1.0 request, so container
/// images need no curl.
fn healthcheck(settings: &Settings) -> anyhow::Result<()> {
    let mut addr = settings.listen_addr();
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
