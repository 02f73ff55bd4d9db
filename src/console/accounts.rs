//! `version-app user …`: console accounts are managed on the server's command line.

use clap::Subcommand;
use std::io::{BufRead, IsTerminal, Read, Write};

use crate::console::password;
use crate::console::role::Role;
use crate::db::models::console as store;
use crate::db::AnyConnection;

/// `user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account; the password is read from standard input when it is not a terminal,
    /// else prompted for (twice, without echo).
    Add {
        /// Login name (letters, digits, `.`, `_`, `-`, `@`).
        name: String,
        /// analyst, release_manager or admin.
        #[arg(long)]
        role: String,
    },
    /// List accounts (never their password hashes).
    List,
    /// Change an account's role (applies to its open sessions at once).
    SetRole {
        /// Login name.
        name: String,
        /// analyst, release_manager or admin.
        role: String,
    },
    /// Set a new password (read like `user add` does) and end the account's sessions.
    SetPassword {
        /// Login name.
        name: String,
    },
    /// Remove an account and end its sessions.
    Remove {
        /// Login name.
        name: String,
    },
}

/// Reads a new password: one line from standard input when it is not a terminal (scripts,
/// `echo … |`), else a prompt without echo, typed twice.
fn read_new_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat the password: ")?;
        anyhow::ensure!(
            first == second,
            "the two passwords differ; nothing was changed"
        );
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .take(password::MAX_PASSWORD_BYTES as u64 + 2)
            .read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    password::check_new_password(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
}

/// Runs a `user` command against the store.
pub fn run(
    conn: &mut AnyConnection,
    command: UserCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, role } => {
            password::check_name(&name).map_err(anyhow::Error::msg)?;
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                store::find_user(conn, &name)?.is_none(),
                "an account named {name} already exists"
            );
            let hash =
                password::hash_password(&read_new_password()?).map_err(anyhow::Error::msg)?;
            let now = chrono::Utc::now().naive_utc();
            match store::insert_user(conn, &name, role.as_str(), &hash, now)? {
                Some(_) => writeln!(out, "added {name} with the role {role}")?,
                None => anyhow::bail!("an account named {name} already exists"),
            }
        }
        UserCommand::List => {
            writeln!(
                out,
                "{:<24} {:<16} {:<20} {:<9} sessions",
                "name", "role", "created", "status"
            )?;
            for user in store::list_users(conn)? {
                let sessions = store::count_sessions(conn, &user.name)?;
                writeln!(
                    out,
                    "{:<24} {:<16} {:<20} {:<9} {sessions}",
                    user.name,
                    user.role,
                    user.created_at.format("%Y-%m-%d %H:%M:%S"),
                    if user.disabled { "disabled" } else { "active" }
                )?;
            }
        }
        UserCommand::SetRole { name, role } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                store::set_role(conn, &name, role.as_str())?,
                "no account named {name}"
            );
            writeln!(out, "{name} now has the role {role}")?;
        }
        UserCommand::SetPassword { name } => {
            anyhow::ensure!(
                store::find_user(conn, &name)?.is_some(),
                "no account named {name}"
            );
            let hash =
                password::hash_password(&read_new_password()?).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                store::set_password(conn, &name, &hash)?,
                "no account named {name}"
            );
            writeln!(out, "password of {name} changed; its sessions were ended")?;
        }
        UserCommand::Remove { name } => {
            anyhow::ensure!(store::remove_user(conn, &name)?, "no account named {name}");
            writeln!(out, "removed {name} and its sessions")?;
        }
    }
    Ok(())
}
