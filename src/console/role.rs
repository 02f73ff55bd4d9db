//! Who is asking: console roles, ordered (each may do everything the roles below it may),
//! and the logged-in user. Plain data, so that the layout can show them without importing
//! the session code (which renders its refusals with the layout).

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// What an account may do in the console. The order is the privilege order, so
/// `role >= Role::ReleaseManager` reads as "at least a release manager".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads insights and the release table.
    Analyst,
    /// An analyst who also edits releases.
    ReleaseManager,
    /// Everything, plus accounts and raw Service Ping payloads.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Analyst, Role::ReleaseManager, Role::Admin];

    /// The stored and typed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Analyst => "analyst",
            Role::ReleaseManager => "release_manager",
            Role::Admin => "admin",
        }
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Role::Analyst => "Analyst",
            Role::ReleaseManager => "Release manager",
            Role::Admin => "Administrator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s.trim())
            .ok_or_else(|| format!("unknown role `{s}` (known: analyst, release_manager, admin)"))
    }
}

/// A logged-in console user (from the session cookie).
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    /// Account name.
    pub name: String,
    /// Account role.
    pub role: Role,
    /// The session's CSRF token, for the hidden `csrf_token` field of every form.
    pub csrf_token: String,
    /// The session's row id.
    pub session_id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_privilege_and_round_trip() {
        assert!(Role::Analyst < Role::ReleaseManager);
        assert!(Role::ReleaseManager < Role::Admin);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
