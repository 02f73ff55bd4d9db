//! Diesel table definitions, written by hand with portable types only so that one schema
//! serves SQLite and PostgreSQL (the migration trees differ only in DDL spelling).

diesel::table! {
    /// GitLab releases and their security levels.
    releases (id) {
        /// Row id.
        id -> BigInt,
        /// Canonical version text (`X.Y.Z`).
        version -> Text,
        /// Numeric major, for sorting in SQL.
        major -> BigInt,
        /// Numeric minor.
        minor -> BigInt,
        /// Numeric patch.
        patch -> BigInt,
        /// Publication day.
        released_on -> Date,
        /// `none`, `non_critical` or `critical`.
        security -> Text,
        /// Advisory batch id, if named.
        advisory -> Nullable<Text>,
        /// Advisory text shown in GitLab's modal.
        details -> Text,
        /// When the row was created (UTC).
        created_at -> Timestamp,
        /// When the row last changed (UTC).
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// API tokens, stored only as hashes.
    api_tokens (id) {
        /// Row id.
        id -> BigInt,
        /// Human name given at creation.
        name -> Text,
        /// Hex SHA-256 of the token.
        token_hash -> Text,
        /// What the token may do, e.g. `releases:write`.
        scope -> Text,
        /// Creation time (UTC).
        created_at -> Timestamp,
        /// Last successful use (UTC).
        last_used_at -> Nullable<Timestamp>,
        /// Revocation time (UTC); a revoked token is refused.
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Version checks per day: one row per (day, Referer host, version, country), counts
    /// added up by every app process's flushes.
    version_checks (day, host, version, country) {
        /// UTC day of the checks.
        day -> Date,
        /// Referer hostname (lower-case, punycode); `''` when the check had no Referer.
        host -> Text,
        /// Normalised running version (no `-ee`).
        version -> Text,
        /// Two-letter country code of the client; `''` when unknown or GeoIP is off.
        country -> Text,
        /// Checks counted.
        count -> BigInt,
        /// Latest check (UTC).
        last_seen -> Timestamp,
    }
}

diesel::table! {
    /// Every instance that ever sent a check with a Referer.
    hosts (hostname) {
        /// Referer hostname (lower-case, punycode).
        hostname -> Text,
        /// First check (UTC).
        first_seen -> Timestamp,
        /// Latest check (UTC).
        last_seen -> Timestamp,
        /// Version reported by the latest check.
        last_version -> Text,
        /// Country of the latest check's client, when known.
        country -> Nullable<Text>,
    }
}

diesel::table! {
    /// The verdict for every version ever seen in a check, recomputed when releases change,
    /// so that "who runs a vulnerable version?" is a join.
    version_status (version) {
        /// Normalised version, as in `version_checks.version` and `hosts.last_version`.
        version -> Text,
        /// Numeric major, for sorting in SQL.
        major -> BigInt,
        /// Numeric minor.
        minor -> BigInt,
        /// Numeric patch.
        patch -> BigInt,
        /// Pre-release tag (`rc42`, `pre`) or `''`.
        prerelease -> Text,
        /// `success`, `warning` or `danger`, as `check.json` answers now.
        severity -> Text,
        /// True when exposed to a critical advisory.
        critical -> Bool,
        /// When this verdict was computed (UTC).
        computed_at -> Timestamp,
    }
}
